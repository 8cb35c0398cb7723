"""``lora``: plain LoRA (peft) on chosen attention projections, trained with the diffusion loss.

Saved so that the diffusers pipeline's ``load_lora_weights(folder)`` loads it (Wan, CogVideoX,
HunyuanVideo, ZeroScope/ModelScope) and gives the same output as motiontune's own sampler.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from motiontune.adapters.lora import (
    LORA_WEIGHTS_NAME,
    inject_lora,
    load_lora_state,
    lora_layers,
    lora_parameters,
    lora_target_modules,
    save_lora_for_diffusers,
    set_lora_scale,
)
from motiontune.errors import ConfigError
from motiontune.recipes.base import Recipe, RecipeConfig, write_recipe_json

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

ATTENTION_KINDS = ("spatial", "temporal", "joint", "cross")
PROJECTION_ROLES = ("q", "k", "v", "o")


@dataclass
class LoraRecipeConfig(RecipeConfig):
    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.0
    #: attention kinds that get LoRA (self-attention of every kind by default)
    attention: tuple[str, ...] = ("spatial", "temporal", "joint")
    #: projections inside each chosen attention
    projections: tuple[str, ...] = PROJECTION_ROLES
    learning_rate: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        self.attention, self.projections = checked_targets(self.attention, self.projections)
        if self.rank < 1:
            raise ConfigError(f"rank must be >= 1 (got {self.rank})")


def checked_targets(attention: Any, projections: Any, kinds: tuple[str, ...] = ATTENTION_KINDS) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Attention kinds and projection roles as tuples (comma strings accepted), validated."""
    attention, projections = _as_tuple(attention), _as_tuple(projections)
    bad = [k for k in attention if k not in kinds]
    if bad:
        raise ConfigError(f"unknown attention kind(s) {bad}; choose from {', '.join(kinds)}")
    bad = [p for p in projections if p not in PROJECTION_ROLES]
    if bad:
        raise ConfigError(f"unknown projection(s) {bad}; choose from {', '.join(PROJECTION_ROLES)}")
    return attention, projections


def _as_tuple(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        return tuple(x.strip() for x in v.split(",") if x.strip())
    return tuple(v)


class LoraRecipe(Recipe):
    name = "lora"
    summary = "plain LoRA (peft) on chosen attention projections; loads with diffusers' load_lora_weights"
    config_cls = LoraRecipeConfig
    adapter_name = "default"

    def select_sites(self, spec: "BackboneSpec") -> list:
        sites = spec.sites(self.config.attention)
        if not sites:
            have = sorted({s.kind for s in spec.attention_sites()})
            raise ConfigError(
                f"{spec.family} has no {'/'.join(self.config.attention)} attention; it has: {', '.join(have)}"
            )
        return sites

    def apply(self, spec: "BackboneSpec") -> None:
        if self.spec is spec:
            return
        super().apply(spec)
        targets = lora_target_modules(self.select_sites(spec), self.config.projections)
        self.lora_config = inject_lora(
            spec.denoiser, targets, self.config.rank, self.config.alpha, self.config.dropout, self.adapter_name
        )
        self._layers = lora_layers(spec.denoiser)

    def named_trainable(self) -> dict:
        return lora_parameters(self.spec.denoiser, self.adapter_name)

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {
                "params": list(self.named_trainable().values()),
                "lr": self.config.learning_rate,
                "weight_decay": self.config.weight_decay,
            }
        ]

    def set_adapter_scale(self, scale: float) -> None:
        set_lora_scale(self._layers, self.adapter_name, scale)

    def save(self, folder: str, metadata: dict[str, Any] | None = None) -> None:
        os.makedirs(folder, exist_ok=True)
        save_lora_for_diffusers(self.spec, folder, self.lora_config, self.adapter_name)
        write_recipe_json(folder, self, {**(metadata or {}), "weights": LORA_WEIGHTS_NAME})

    def load_weights(self, folder: str) -> None:
        load_lora_state(self.spec, folder, self.adapter_name)
