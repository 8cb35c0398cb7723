"""Recipe registry: one class per customization method."""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from motiontune.errors import ConfigError, ModelLoadError
from motiontune.recipes.base import Recipe, RecipeConfig, read_recipe_json

_RECIPES: dict[str, str] = {
    "lora": "motiontune.recipes.lora:LoraRecipe",
    "full": "motiontune.recipes.full:FullRecipe",
    "timestep": "motiontune.recipes.timestep:TimestepRecipe",
    "motiondirector": "motiontune.recipes.motiondirector:MotionDirectorRecipe",
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
    """Rebuild a saved recipe from ``folder`` (its ``motiontune.json``) and load its weights into ``spec``."""
    info = read_recipe_json(folder)
    recipe = make_recipe(info["recipe"], **info.get("config", {}))
    recipe.prepare_load(info, folder)
    recipe.apply(spec)
    recipe.load_weights(folder)
    bad = [k for k, v in recipe.named_trainable().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelLoadError(f"{_non_finite_file(folder)}: the adapter's weights hold NaN or infinite values (e.g. {bad[0]}); "
                             f"the run that wrote them diverged")
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


__all__ = ["Recipe", "RecipeConfig", "get_recipe_class", "load_recipe", "make_recipe", "recipe_names", "register_recipe"]
