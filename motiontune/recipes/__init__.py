"""Recipe registry: one class per customization method."""

from __future__ import annotations

import importlib
import os
import weakref
from typing import Any

import torch

from motiontune.errors import ConfigError, ModelLoadError
from motiontune.recipes.base import Recipe, RecipeConfig, read_recipe_json

_RECIPES: dict[str, str] = {
    "lora": "motiontune.recipes.lora:LoraRecipe",
    "full": "motiontune.recipes.full:FullRecipe",
    "timestep": "motiontune.recipes.timestep:TimestepRecipe",
    "motiondirector": "motiontune.recipes.motiondirector:MotionDirectorRecipe",
    "jointtuner": "motiontune.recipes.jointtuner:JointTunerRecipe",
    "dualreal": "motiontune.recipes.dualreal:DualRealRecipe",
    "follow_your_motion": "motiontune.recipes.follow_your_motion:FollowYourMotionRecipe",
    "synmotion": "motiontune.recipes.synmotion:SynMotionRecipe",
}


def register_recipe(name: str, target: str) -> None:
    _RECIPES[name] = target


def recipe_names() -> list[str]:
    return sorted(_RECIPES)


def get_recipe_class(name: str) -> type[Recipe]:
    if name not in _RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(recipe_names())}")
    module, cls = _RECIPES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_recipe(name: str, **settings: Any) -> Recipe:
    return get_recipe_class(name)(**settings)


def load_recipe(folder: str, spec: Any) -> Recipe:
    """Rebuild a saved recipe from ``folder`` (its ``motiontune.json``) and load its weights into ``spec``.

    Loading the same folder into the same spec again reuses the adapter already applied (with the
    saved settings and weights); another adapter on a spec that carries one is refused.
    """
    info = read_recipe_json(folder)
    trained = info.get("backbone") if isinstance(info.get("backbone"), dict) else {}
    given = f"{spec.source} ({spec.family})"
    if trained.get("family") and trained["family"] != spec.family:
        raise ModelLoadError(f"{folder}: adapter trained for {trained.get('source')} ({trained['family']}), not for {given}")
    key = os.path.realpath(folder)
    loaded = _LOADED.get(spec)
    if loaded is not None and loaded[0] != key:
        raise ConfigError(f"{folder}: the model already carries the adapter {loaded[0]}; load the backbone again to apply another")
    recipe = make_recipe(info["recipe"], **info.get("config", {}))
    if loaded is not None:  # the same adapter again: its saved settings (a generate call may have changed the scale)
        loaded[1].config = recipe.config
        recipe = loaded[1]
    else:
        recipe.prepare_load(info, folder)
        recipe.apply(spec)
    try:
        recipe.load_weights(folder)
    except (ConfigError, RuntimeError) as exc:  # RuntimeError: torch's size mismatch
        raise ModelLoadError(f"{folder}: cannot load this adapter (trained for {trained.get('source')} ({trained.get('family')})) "
                             f"onto {given}: {_reason(exc)}") from None
    bad = [k for k, v in recipe.named_trainable().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelLoadError(f"{_non_finite_file(folder)}: the adapter's weights hold NaN or infinite values (e.g. {bad[0]}); "
                             f"the run that wrote them diverged")
    _LOADED[spec] = (key, recipe)
    return recipe


def _non_finite_file(folder: str) -> str:
    """The first weights file in ``folder`` holding NaN or infinity (else the folder)."""
    from safetensors import safe_open

    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), "pt") as fh:
                for key in fh.keys():
                    t = fh.get_tensor(key)
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        return os.path.join(folder, name)
    return folder


def _reason(exc: Exception) -> str:
    """One line of a loading error (torch's size-mismatch line where there is one)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    return next((ln for ln in lines if "size mismatch" in ln), lines[0])


#: spec -> (folder, recipe) of the adapter :func:`load_recipe` applied to it
_LOADED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


__all__ = ["Recipe", "RecipeConfig", "get_recipe_class", "load_recipe", "make_recipe", "recipe_names", "register_recipe"]
