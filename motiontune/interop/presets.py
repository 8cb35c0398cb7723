"""Shipped presets: the authors' settings per recipe and backbone (``motiontune/presets/*.yaml``).

A preset names its recipe and backbone, where its numbers come from (``source``: paper, code, or
measured here; ``reference``: which setting comes from where), the GPU memory it needs (stated as
"not measured here" until measured), and three groups of settings named like the command's flags:
``train`` (``steps``, ``lr``, ``batch_size``, ``num_frames``, ``height``, ``width`` ...),
``recipe_settings`` (the recipe's own settings, as with ``--set``) and ``generate`` (``steps``,
``guidance`` ...). ``motiontune train --preset NAME`` and ``motiontune generate --preset NAME``
start from them; flags and ``--config`` files override them. A preset whose recipe is not in
this version is listed as skipped and refused by ``--preset``.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from motiontune.errors import ConfigError

#: keys a preset's ``train`` group may set (named like `motiontune train`'s flags)
TRAIN_KEYS = ("steps", "lr", "batch_size", "gradient_accumulation_steps", "gradient_checkpointing", "mixed_precision",
              "seed", "timestep_distribution", "num_frames", "height", "width", "frame_sampling", "frame_stride",
              "resize_mode", "train_timesteps", "infer_timesteps")
#: keys of ``generate`` (named like `motiontune generate`'s flags)
GENERATE_KEYS = ("steps", "guidance", "num_frames", "height", "width", "adapter_scale", "noise_prior", "negative_prompt")
#: the recipe settings that `motiontune train` also takes as flags (flags override the preset)
RECIPE_FLAGS = ("rank", "alpha", "projections", "attention", "train_timesteps", "infer_timesteps")
SOURCES = ("paper", "code", "paper + code", "measured here")


@dataclass
class Preset:
    name: str
    recipe: str
    backbone: str
    source: str
    reference: str
    gpu_memory: str
    train: dict[str, Any] = field(default_factory=dict)
    recipe_settings: dict[str, Any] = field(default_factory=dict)
    generate: dict[str, Any] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        from motiontune.recipes import recipe_names

        return self.recipe in recipe_names()


def _folder():
    return resources.files("motiontune").joinpath("presets")


def _parse(name: str, text: str) -> Preset:
    import yaml

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {name}: invalid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"preset {name}: not a mapping of settings")
    missing = [k for k in ("recipe", "backbone", "source", "reference", "gpu_memory") if not data.get(k)]
    if missing:
        raise ConfigError(f"preset {name}: lacks {', '.join(missing)}")
    if data["source"] not in SOURCES:
        raise ConfigError(f"preset {name}: source must be one of {', '.join(SOURCES)} (got {data['source']!r})")
    unknown = sorted(set(data) - {"recipe", "backbone", "source", "reference", "gpu_memory", "train", "recipe_settings", "generate"})
    if unknown:
        raise ConfigError(f"preset {name}: unknown key(s) {', '.join(unknown)}")
    groups = {}
    for group, allowed in (("train", TRAIN_KEYS), ("recipe_settings", None), ("generate", GENERATE_KEYS)):
        value = data.get(group) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"preset {name}: {group} must be a mapping")
        bad = sorted(k for k in value if allowed is not None and k not in allowed)
        if bad:
            raise ConfigError(f"preset {name}: unknown {group} setting(s) {', '.join(bad)}")
        groups[group] = dict(value)
    return Preset(name, str(data["recipe"]), str(data["backbone"]), str(data["source"]), str(data["reference"]),
                  str(data["gpu_memory"]), **groups)


def presets() -> dict[str, Preset]:
    """Every shipped preset by name (the file name without ``.yaml``), sorted."""
    out = {}
    folder = _folder()
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            name = entry.name[: -len(".yaml")]
            out[name] = _parse(name, entry.read_text(encoding="utf-8"))
    return out


def get_preset(name: str) -> Preset:
    all_presets = presets()
    if name not in all_presets:
        raise ConfigError(f"unknown preset {name!r}; see `motiontune list presets`")
    p = all_presets[name]
    if not p.available:
        raise ConfigError(f"preset {name}: its recipe {p.recipe!r} is not in this version of motiontune")
    return p


def apply_train_preset(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (flags over a --config file) over the preset they name with ``preset``."""
    name = settings.pop("preset", None)
    if not name:
        return settings
    p = get_preset(str(name))
    if settings.get("recipe") and settings["recipe"] != p.recipe:
        raise ConfigError(f"--preset {name} is for the {p.recipe} recipe, not {settings['recipe']}")
    out: dict[str, Any] = {"recipe": p.recipe, "backbone": p.backbone}
    out.update(p.train)
    extra = {}
    given = set((settings.get("recipe_settings") or {}))
    for item in settings.get("set") or []:
        given.add(str(item).split("=", 1)[0].strip().replace("-", "_"))
    for key, value in p.recipe_settings.items():
        if key in RECIPE_FLAGS:
            out[key] = value
        elif key not in given:
            extra[key] = value
    out.update({k: v for k, v in settings.items() if k != "recipe_settings"})
    merged = {**extra, **(settings.get("recipe_settings") or {})}
    if merged:
        out["recipe_settings"] = merged
    return out


def apply_generate_preset(settings: dict[str, Any]) -> dict[str, Any]:
    name = settings.pop("preset", None)
    if not name:
        return settings
    p = get_preset(str(name))
    out: dict[str, Any] = {k: v for k, v in p.train.items() if k in ("num_frames", "height", "width")}
    out.update(p.generate)
    if not settings.get("adapter"):
        out["backbone"] = p.backbone
    out.update(settings)
    return out


def list_presets() -> None:
    """Print the presets with their source and memory (``motiontune list presets``)."""
    print("presets (name: recipe on backbone; source; GPU memory)")
    for name, p in presets().items():
        t = p.train
        size = f"{t['num_frames']}x{t['height']}x{t['width']}" if {"num_frames", "height", "width"} <= set(t) else "size: model default"
        bits = [f"{k}={v}" for k, v in p.recipe_settings.items()] + [f"lr={t['lr']}" for _ in [0] if "lr" in t] + \
               [f"steps={t['steps']}" for _ in [0] if "steps" in t] + [size] + \
               [f"guidance={p.generate['guidance']}" for _ in [0] if "guidance" in p.generate]
        skipped = "" if p.available else f"  [skipped: recipe {p.recipe} is not in this version]"
        print(f"  {name:36s} {p.recipe} on {p.backbone}; {p.source}; GPU memory {p.gpu_memory}{skipped}")
        print(f"  {'':36s} {', '.join(bits)}")
        print(textwrap.fill(f"from: {p.reference}", width=110, initial_indent=" " * 39, subsequent_indent=" " * 45))


__all__ = ["Preset", "apply_generate_preset", "apply_train_preset", "get_preset", "list_presets", "presets"]
