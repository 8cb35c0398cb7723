"""Backbone registry: one :class:`BackboneSpec` per model family.

Named local models (``toy``, and any added with :func:`register_model_alias`) are looked up in
:mod:`motiontune.backbones.local_models`, which imports the code that finds a model's folder
only when that name is loaded: importing this registry imports nothing of the toy world.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from motiontune.backbones.base import AttentionSite, BackboneSpec, FrameRule, TokenLayout, _looks_like_hub_id, read_model_index
from motiontune.backbones.local_models import ModelAlias, model_aliases, register_model_alias, resolve_model_alias
from motiontune.errors import ConfigError, ModelLoadError

#: family -> "module:Class" (imported lazily so that listing backbones stays cheap)
_FAMILIES: dict[str, str] = {
    "wan": "motiontune.backbones.wan:WanSpec",
    "cogvideox": "motiontune.backbones.cogvideox:CogVideoXSpec",
    "hunyuan_video": "motiontune.backbones.hunyuan_video:HunyuanVideoSpec",
    "latte": "motiontune.backbones.latte:LatteSpec",
    "unet3d": "motiontune.backbones.unet3d:UNet3DSpec",
}


def register_backbone(family: str, target: str) -> None:
    _FAMILIES[family] = target


def backbone_families() -> list[str]:
    return sorted(_FAMILIES)


def get_spec_class(family: str) -> type[BackboneSpec]:
    if family not in _FAMILIES:
        raise ConfigError(f"unknown backbone {family!r}; known: {', '.join(backbone_families())}")
    module, cls = _FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), cls)


def all_aliases() -> dict[str, tuple[str, str]]:
    """alias -> (family, hub id) of the families' hub aliases (named local models such as ``toy``:
    :func:`model_aliases`)."""
    out: dict[str, tuple[str, str]] = {}
    for fam in backbone_families():
        for alias, hub in get_spec_class(fam).aliases.items():
            out[alias] = (fam, hub)
    return out


def detect_family(folder: str) -> str:
    """The family of a local diffusers folder, from the denoiser class in model_index.json."""
    index = read_model_index(folder)
    names = {v[1] for v in index.values() if isinstance(v, list) and len(v) == 2 and v[1]}
    for fam in backbone_families():
        if names & set(get_spec_class(fam).denoiser_classes):
            return fam
    raise ModelLoadError(f"{folder}: no backbone handles the denoiser classes {sorted(names)}")


def load_backbone(
    source: str,
    family: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **kwargs: Any,
) -> BackboneSpec:
    """Load a backbone from an alias, a hub id or a local folder.

    ``family`` may be omitted for aliases and local folders (detected from model_index.json);
    a bare hub id needs it.
    """
    given = source
    if source in model_aliases():  # a named local model ("toy"): its folder, found only now
        folder, fam = resolve_model_alias(source)
        if family is not None and fam is not None and family != fam:
            raise ConfigError(f"{source!r} is a {fam} model, not {family}")
        source, family = folder, family or fam
    aliases = all_aliases()
    if source in aliases:
        fam, hub = aliases[source]
        if family is not None and family != fam:
            raise ConfigError(f"alias {source!r} is a {fam} model, not {family}")
        family, source = fam, hub
    if family is None:
        if os.path.isdir(source):
            family = detect_family(source)
        elif not _looks_like_hub_id(source):
            raise ModelLoadError(f"{source}: no such model folder, and not a known alias (see `motiontune list`)")
        elif source in _FAMILIES:
            raise ConfigError(f"{source!r} is a backbone family; give a model id, alias or folder (see `motiontune list`)")
        else:
            raise ConfigError(f"cannot tell the backbone family of {source!r}: pass --family (one of {', '.join(backbone_families())})")
    spec = get_spec_class(family).from_pretrained(source, device=device, dtype=dtype, **kwargs)
    # what the user named, recorded with a trained adapter: a folder as an absolute path
    spec.name = os.path.abspath(given) if given == source and os.path.isdir(given) else given
    return spec


__all__ = [
    "AttentionSite",
    "BackboneSpec",
    "FrameRule",
    "TokenLayout",
    "backbone_families",
    "get_spec_class",
    "load_backbone",
    "register_backbone",
    "detect_family",
    "all_aliases",
    "ModelAlias",
    "model_aliases",
    "register_model_alias",
    "resolve_model_alias",
]
