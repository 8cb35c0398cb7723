"""Named local models: a short name (``toy``) for a model folder that is found when asked for.

``load_backbone(NAME)``, ``api.load(NAME)`` and ``--backbone NAME`` look a name up here first;
``motiontune list`` lists the names with their descriptions. An entry holds a *resolver*, a
callable or a ``"package.module:function"`` string (imported only when the name is resolved),
that returns the folder (diffusers layout), and the backbone family to load it with (None: read
from the folder's model_index.json).

The embedded toy model is the built-in entry. The core never imports the toy world, so the
entry names the toy world's function by its dotted path, the same way the recipe and backbone
family registries name their classes; importing this module (or the backbone registry) imports
nothing of the toy world, and ``motiontune.toyworld.plugin`` is imported only when ``toy`` is
resolved. Registering the toy model from the toy world's own side on import would not do: the
Python API (``api.load("toy")``) must work in a program that never imported the toy world, and
an installed entry point would tie the name to the package metadata of an editable install.
Other packages add their models with :func:`register_model_alias`.
"""

from __future__ import annotations

from dataclasses import dataclass

from motiontune.errors import ConfigError, ModelLoadError
from motiontune.utils.targets import Target, check_target, resolve_target


@dataclass(frozen=True)
class ModelAlias:
    """A named local model: ``resolver()`` returns its folder; ``family`` loads it (None: detect)."""

    name: str
    resolver: Target
    family: str | None = None
    description: str = ""


_MODEL_ALIASES: dict[str, ModelAlias] = {
    "toy": ModelAlias(
        "toy",
        "motiontune.toyworld.plugin:toy_model_path",
        family="wan",
        description="the embedded toy-world model (a tiny Wan2.1)",
    ),
}


def register_model_alias(name: str, resolver: Target, family: str | None = None, description: str = "") -> None:
    """Make ``name`` load the folder that ``resolver`` (a callable, or a ``"module:function"``
    string imported on first use) returns, with the backbone ``family`` (None: detected from
    the folder). Registering a name again replaces it."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ConfigError(f"model alias name {name!r} must be a non-empty name without surrounding spaces")
    try:
        check_target(resolver)
    except ValueError as exc:
        raise ConfigError(f"model alias {name!r}: {exc}") from exc
    _MODEL_ALIASES[name] = ModelAlias(name, resolver, family, description)


def model_aliases() -> dict[str, ModelAlias]:
    """name -> :class:`ModelAlias`, sorted by name (nothing is resolved)."""
    return dict(sorted(_MODEL_ALIASES.items()))


def resolve_model_alias(name: str) -> tuple[str, str | None]:
    """(folder, family) of the named local model; raises ModelLoadError if it cannot be found."""
    if name not in _MODEL_ALIASES:
        raise ConfigError(f"unknown model alias {name!r}; known: {', '.join(sorted(_MODEL_ALIASES))}")
    entry = _MODEL_ALIASES[name]
    try:
        resolver = resolve_target(entry.resolver)
    except ImportError as exc:
        raise ModelLoadError(f"model {name!r} is not available ({exc})") from exc
    folder = resolver()
    return str(folder), entry.family


__all__ = ["ModelAlias", "model_aliases", "register_model_alias", "resolve_model_alias"]
