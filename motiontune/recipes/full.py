"""``full``: full fine-tuning of chosen attention modules (or of the whole denoiser).

Used by the timestep-constrained method as its full-fine-tuning option and to train the toy
model. The adapter scale interpolates between the base weights and the tuned ones
(``w = base + s * (tuned - base)``), so the per-timestep inference schedule works exactly as
for LoRA: scale 0 restores the base weights bit for bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from motiontune.errors import ConfigError
from motiontune.recipes.base import Recipe, RecipeConfig, write_recipe_json
from motiontune.recipes.lora import ATTENTION_KINDS, PROJECTION_ROLES, checked_targets
from motiontune.utils.files import load_tensors, save_tensors

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

WEIGHTS_NAME = "full_weights.safetensors"


@dataclass
class FullRecipeConfig(RecipeConfig):
    #: attention kinds whose projections train, or ("all",) for every denoiser parameter
    attention: tuple[str, ...] = ("spatial", "temporal", "joint")
    projections: tuple[str, ...] = PROJECTION_ROLES
    learning_rate: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.attention, self.projections = checked_targets(self.attention, self.projections, ATTENTION_KINDS + ("all",))


class FullRecipe(Recipe):
    name = "full"
    summary = "full fine-tuning of chosen attention projections (or of the whole denoiser)"
    config_cls = FullRecipeConfig

    def apply(self, spec: "BackboneSpec") -> None:
        if self.spec is spec:
            return
        super().apply(spec)
        named = dict(spec.denoiser.named_parameters())
        if "all" in self.config.attention:
            names = list(named)
        else:
            modules = []
            sites = spec.sites(self.config.attention)
            if not sites:
                raise ConfigError(f"{spec.family} has no {'/'.join(self.config.attention)} attention")
            for site in sites:
                modules += site.module_names(tuple(r for r in self.config.projections if r in site.projections))
            names = [n for n in named if any(n.startswith(m + ".") for m in modules)]
        if not names:
            raise ConfigError("no parameters selected for full fine-tuning")
        self._params = {n: named[n] for n in names}
        for p in self._params.values():
            p.requires_grad_(True)
        self._base = {n: p.detach().clone() for n, p in self._params.items()}
        self._tuned: dict[str, torch.Tensor] | None = None
        self._scale = 1.0

    def named_trainable(self) -> dict[str, torch.nn.Parameter]:
        return self._params

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self._params.values()), "lr": self.config.learning_rate, "weight_decay": self.config.weight_decay}]

    def set_adapter_scale(self, scale: float) -> None:
        if scale == self._scale:
            return
        if self._tuned is None or self._scale == 1.0:
            self._tuned = {n: p.detach().clone() for n, p in self._params.items()}
        with torch.no_grad():
            for n, p in self._params.items():
                if scale == 0.0:
                    p.copy_(self._base[n])
                elif scale == 1.0:
                    p.copy_(self._tuned[n])
                else:
                    p.copy_(self._base[n] + scale * (self._tuned[n] - self._base[n]))
        self._scale = scale

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self._scale != 1.0 and self._tuned is not None:
            return {n: v.clone() for n, v in self._tuned.items()}
        return super().state_dict()

    def save(self, folder: str, metadata: dict[str, Any] | None = None) -> None:
        os.makedirs(folder, exist_ok=True)
        save_tensors(self.state_dict(), os.path.join(folder, WEIGHTS_NAME))
        write_recipe_json(folder, self, {**(metadata or {}), "weights": WEIGHTS_NAME})

    def load_weights(self, folder: str) -> None:
        self.load_state_dict(load_tensors(os.path.join(folder, WEIGHTS_NAME)))
        self._tuned, self._scale = None, 1.0
