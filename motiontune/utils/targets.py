"""Lazy ``"package.module:attribute"`` references, the form registries use to name code they
must not import up front (the recipe and backbone families, and what optional parts of the
package such as the toy world lend to the core's registries).

A registry stores the string (or a callable given directly) and calls :func:`resolve_target`
only when its entry is asked for, so that importing the registry imports nothing it names.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable

#: "package.module:attribute" (dotted names on both sides of one colon)
_TARGET_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

Target = str | Callable[..., Any]


def check_target(target: Target) -> Target:
    """``target`` unchanged if it is a callable or a well-formed ``"module:attribute"`` string;
    raises ValueError otherwise (at registration, rather than when the entry is first used)."""
    if callable(target):
        return target
    if not isinstance(target, str) or not _TARGET_RE.match(target):
        raise ValueError(f"expected a callable or a 'package.module:attribute' string, got {target!r}")
    return target


def resolve_target(target: Target) -> Any:
    """The object ``target`` names, importing its module now (a callable is returned as is).

    A missing module or attribute raises ImportError naming ``target``.
    """
    if callable(target):
        return target
    module_name, attribute = check_target(target).split(":")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ImportError(f"{module_name} has no attribute {attribute!r} (named by {target!r})") from exc
    return obj


class LazyTarget:
    """A class attribute holding the object a ``"module:attribute"`` string names, imported when
    the attribute is first read (e.g. a backbone's diffusers pipeline class, so that listing the
    backbones does not import diffusers)."""

    def __init__(self, target: str) -> None:
        self.target = check_target(target)
        self._value: Any = None

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if self._value is None:
            self._value = resolve_target(self.target)
        return self._value


__all__ = ["LazyTarget", "Target", "check_target", "resolve_target"]
