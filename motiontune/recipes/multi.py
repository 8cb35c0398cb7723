"""Shared block of the recipes with several named LoRA adapters (branches).

A recipe built on :class:`NamedLoraRecipe` declares its adapters (name -> attention kinds,
projections, rank, alpha, dropout; or explicit layers, and the kind: peft LoRA, gated LoRA, or a
bottleneck block adapter on every transformer block) in
:meth:`NamedLoraRecipe.adapter_plan`; this block injects them as named adapters on one denoiser
(:class:`motiontune.adapters.base.AdapterSet`), makes each adapter a branch with its own
optimizer, saves the adapters the recipe ships (each in its own file,
``adapter_<name>.safetensors``) and, on load, injects the shipped ones and refuses a folder that
lacks an adapter the recipe needs at inference. At sampling, the adapters of
``inference_adapters`` follow the recipe's timestep schedule and the others are switched off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from motiontune.adapters.base import AdapterSet
from motiontune.adapters.lora import lora_target_modules
from motiontune.errors import ConfigError
from motiontune.recipes.base import Recipe, write_recipe_json
from motiontune.recipes.lora import PROJECTION_ROLES, _as_tuple

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec


@dataclass(frozen=True)
class AdapterDecl:
    """Where one named adapter goes, its kind and its size."""

    attention: tuple[str, ...]
    projections: tuple[str, ...] = PROJECTION_ROLES
    rank: int = 16
    alpha: float = 16.0
    dropout: float = 0.0
    #: "lora" (peft), "gated" (gated LoRA, :mod:`motiontune.adapters.gated_lora`) or "block" (a
    #: bottleneck adapter on the attention and feed-forward of every block, of width ``rank``;
    #: :mod:`motiontune.adapters.block_adapter`; ``attention``/``projections``/``modules`` unused)
    kind: str = "lora"
    #: full names of the ``nn.Linear`` layers to adapt, instead of ``attention`` x ``projections``
    modules: tuple[str, ...] | None = None
    #: gated adapters: the gate ("mean", "token", "none") and the scale ("raw": alpha, "alpha_over_r")
    gate: str = "mean"
    scale_mode: str = "raw"
    #: block adapters: the identity residual inside the adapter (the DualReal code's variant)
    residual: bool = False


class NamedLoraRecipe(Recipe):
    """Base of recipes with several named LoRA adapters; subclasses give :meth:`adapter_plan`."""

    #: adapters needed at inference (a loaded folder must hold them)
    inference_adapters: tuple[str, ...] = ()

    def __init__(self, config=None, **overrides: Any):
        super().__init__(config, **overrides)
        self.adapters: AdapterSet | None = None
        #: adapters to inject when loading a folder (None: every adapter of the plan)
        self._only: list[str] | None = None

    # ------------------------------------------------------------------ declaration
    def adapter_plan(self, spec: "BackboneSpec") -> dict[str, AdapterDecl]:
        raise NotImplementedError

    def shipped_adapters(self) -> list[str]:
        """Adapters written to the adapter folder (default: all)."""
        return list(self.adapters.names) if self.adapters else []

    # ------------------------------------------------------------------ injection
    def apply(self, spec: "BackboneSpec") -> None:
        if self.spec is spec:
            return
        super().apply(spec)
        plan = self.adapter_plan(spec)
        names = list(plan) if self._only is None else [n for n in plan if n in self._only]
        self.adapters = AdapterSet(spec)
        for name in names:
            decl = plan[name]
            if decl.kind == "block":
                self.adapters.add_block_adapter(name, decl.rank, decl.residual)
                continue
            if decl.modules is not None:
                targets = list(decl.modules)
            else:
                sites = spec.sites(decl.attention)
                if not sites:
                    have = sorted({s.kind for s in spec.attention_sites()})
                    raise ConfigError(f"adapter {name!r}: {spec.family} has no {'/'.join(decl.attention)} attention; it has: {', '.join(have)}")
                targets = lora_target_modules(sites, decl.projections)
            if decl.kind == "gated":
                self.adapters.add_gated_lora(name, targets, decl.rank, decl.alpha, decl.dropout, gate=decl.gate, scale_mode=decl.scale_mode)
            elif decl.kind == "lora":
                self.adapters.add_lora(name, targets, decl.rank, decl.alpha, decl.dropout)
            else:
                raise ConfigError(f"adapter {name!r}: unknown adapter kind {decl.kind!r} (lora, gated, block)")

    def prepare_load(self, info: dict[str, Any], folder: str) -> None:
        """Before :meth:`apply` on load: inject only the adapters the folder holds, and refuse a
        folder that lacks one the recipe needs at inference."""
        saved = info.get("adapters")
        if not isinstance(saved, dict) or not saved:
            raise ConfigError(f"{folder}: motiontune.json lists no adapters (not a {self.name} adapter folder)")
        missing = [n for n in self.inference_adapters if n not in saved]
        if missing:
            raise ConfigError(f"{folder}: the adapter folder lacks the {', '.join(repr(m) for m in missing)} branch the "
                              f"{self.name} recipe needs (it holds: {', '.join(saved)})")
        self._only = list(saved)

    def _require(self) -> AdapterSet:
        if self.adapters is None:
            raise ConfigError(f"the {self.name} recipe is not applied to a backbone yet")
        return self.adapters

    # ------------------------------------------------------------------ branches
    def adapter_names(self) -> list[str]:
        return self._require().names

    def branches(self) -> dict[str, dict[str, torch.nn.Parameter]]:
        a = self._require()
        return {name: a.parameters(name) for name in a.names}

    def named_trainable(self) -> dict[str, torch.nn.Parameter]:
        out: dict[str, torch.nn.Parameter] = {}
        for params in self.branches().values():
            out.update(params)
        return out

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(ps.values()), **self.branch_settings(b)} for b, ps in self.branches().items()]

    # ------------------------------------------------------------------ scales
    def set_adapter_scale(self, scale: float) -> None:
        a = self._require()
        a.set_scales({n: scale for n in a.names})

    def set_adapter_scales(self, scales: dict[str, float]) -> None:
        self._require().set_scales(scales)

    def adapter_scales(self, t: float) -> dict[str, float]:
        """The inference adapters follow the recipe's schedule; the others are off."""
        s = self.adapter_scale(t)
        return {n: (s if n in self.inference_adapters else 0.0) for n in self._require().names}

    # ------------------------------------------------------------------ files
    def save(self, folder: str, metadata: dict[str, Any] | None = None) -> None:
        written = self._require().save(folder, self.shipped_adapters())
        write_recipe_json(folder, self, {**(metadata or {}), "adapters": written})

    def load_weights(self, folder: str) -> None:
        a = self._require()
        a.load(folder, a.names)


def checked_kinds(value: Any, what: str) -> tuple[str, ...] | None:
    """Attention kinds given as a tuple or comma string (None passes through)."""
    if value is None:
        return None
    kinds = _as_tuple(value)
    bad = [k for k in kinds if k not in ("spatial", "temporal", "joint", "cross")]
    if bad or not kinds:
        raise ConfigError(f"{what}: unknown attention kind(s) {bad}; choose from spatial, temporal, joint, cross")
    return kinds
