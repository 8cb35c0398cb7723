"""``timestep``: timestep-constrained one-shot motion customization (METHODS.md section 1).

One adapter, trained with the vanilla diffusion loss and the reference caption only at
timesteps ``t`` in ``[tau, T]`` (the motion-dominant, high-noise end of the trajectory), and
applied at inference only while ``t >= tau``; below ``tau`` the base model denoises alone. The
new prompt is used throughout. Everything else is configuration over the existing blocks:

* the timestep constraint is the general ``train_timesteps`` / ``infer_timesteps`` option of
  every recipe, set here from ``tau`` (``[tau, T]`` in the backbone's native units);
* the adapter is the ``lora`` recipe (``mode="lora"``, rank = alpha = 4) or the ``full``
  recipe (``mode="full"``, full fine-tuning of the same projections, with the scale
  interpolation that restores the base weights bit for bit at scale 0);
* placement: the temporal attentions on backbones that have them (ModelScope/ZeroScope
  ``unet3d``, ``latte``), the joint spatio-temporal attention elsewhere (``cogvideox``,
  ``wan``, ``hunyuan_video``, the toy model); projections Q, K, V, O by default, or V, O only
  (half the parameters, paper Table 4).

Choosing ``tau`` (native units unless ``tau_unit="ddpm"``), in this order:

1. ``tau`` given in the settings;
2. the key ``timestep_tau`` (native units; optional ``timestep_tau_unit``) of the model folder's
   ``motiontune_defaults.json`` (the toy model carries the value found by ``motiontune probe``);
3. the family default of :data:`FAMILY_TAU`: 700 for ``unet3d`` and ``latte`` and 950 for
   ``cogvideox`` (DDPM timesteps; the values of the paper's Table 1); for the flow-matching
   families (``wan``, ``hunyuan_video``) DDPM timestep 700 carried over at equal
   signal-to-noise ratio on the ModelScope schedule (:func:`ddpm_to_flow_t`: native
   ``t = 769.3``, sigma 0.769). The paper reports the boundary only for DDPM models; the SNR
   match keeps the same noise level rather than the same index, and it is the widest of the
   candidate carry-overs (Latte's linear schedule at 700 maps to 923, CogVideoX's 950 to 987),
   so the adapter keeps enough steps on samplers with a strong time shift. Run
   ``motiontune probe`` to measure the boundary of a given model.

The resolved ``tau``, its unit, the placement and the native training range are written to
``motiontune.json`` on save, so an adapter reloads with the same constraint even if a folder
default changes later.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from motiontune.diffusion.schedules import NUM_TRAIN_TIMESTEPS, TimestepRange, ddpm_to_flow_t
from motiontune.errors import ConfigError, ModelLoadError
from motiontune.recipes.base import Recipe, RecipeConfig, write_recipe_json
from motiontune.recipes.full import WEIGHTS_NAME as FULL_WEIGHTS_NAME
from motiontune.recipes.full import FullRecipe, FullRecipeConfig
from motiontune.recipes.lora import ATTENTION_KINDS, PROJECTION_ROLES, LoraRecipe, LoraRecipeConfig, _as_tuple

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

#: family -> (tau, unit) used when neither the settings nor the model folder give one
FAMILY_TAU: dict[str, tuple[float, str]] = {
    "unet3d": (700.0, "ddpm"),
    "latte": (700.0, "ddpm"),
    "cogvideox": (950.0, "ddpm"),
    "wan": (700.0, "ddpm"),  # flow-matching: native t = ddpm_to_flow_t(700) = 769.3
    "hunyuan_video": (700.0, "ddpm"),  # idem
}
#: families not listed above
FALLBACK_TAU: tuple[float, str] = (700.0, "ddpm")
#: keys of a model folder's motiontune_defaults.json
DEFAULTS_TAU_KEY = "timestep_tau"
DEFAULTS_TAU_UNIT_KEY = "timestep_tau_unit"
MODES = ("lora", "full")
TAU_UNITS = ("native", "ddpm")
LORA_LEARNING_RATE = 1e-4
FULL_LEARNING_RATE = 1e-5


@dataclass
class TimestepRecipeConfig(RecipeConfig):
    #: the boundary: train on t in [tau, T], apply the adapter while t >= tau (None: model/family default)
    tau: float | None = None
    #: "native" (the backbone's own t) or "ddpm" (a DDPM timestep, mapped at equal SNR on flow models)
    tau_unit: str = "native"
    #: "lora" or "full" (full fine-tuning of the chosen projections)
    mode: str = "lora"
    rank: int = 4
    alpha: float = 4.0
    dropout: float = 0.0
    #: attention kinds that get the adapter; None: temporal where the backbone has it, else joint
    attention: tuple[str, ...] | None = None
    #: projections inside each chosen attention: ("q", "k", "v", "o") or ("v", "o")
    projections: tuple[str, ...] = PROJECTION_ROLES
    #: None: 1e-4 for LoRA, 1e-5 for full fine-tuning
    learning_rate: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)} (got {self.mode!r})")
        if self.tau_unit not in TAU_UNITS:
            raise ConfigError(f"tau_unit must be 'native' or 'ddpm' (got {self.tau_unit!r})")
        if self.tau is not None:
            try:
                self.tau = float(self.tau)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"tau must be a number of timesteps (got {self.tau!r})") from exc
            if not 0 <= self.tau <= NUM_TRAIN_TIMESTEPS:
                raise ConfigError(f"tau must lie in [0, {NUM_TRAIN_TIMESTEPS}] (got {self.tau:g})")
        if self.attention is not None:
            self.attention = _as_tuple(self.attention)
            allowed = ATTENTION_KINDS + (("all",) if self.mode == "full" else ())
            bad = [k for k in self.attention if k not in allowed]
            if bad or not self.attention:
                raise ConfigError(f"unknown attention kind(s) {bad}; choose from {', '.join(allowed)}")
        self.projections = _as_tuple(self.projections)
        bad = [p for p in self.projections if p not in PROJECTION_ROLES]
        if bad or not self.projections:
            raise ConfigError(f"unknown projection(s) {bad}; choose from {', '.join(PROJECTION_ROLES)}")
        if self.rank < 1:
            raise ConfigError(f"rank must be >= 1 (got {self.rank})")
        if self.learning_rate is None:
            self.learning_rate = LORA_LEARNING_RATE if self.mode == "lora" else FULL_LEARNING_RATE
        rng = self.train_timesteps
        if rng is not None:
            # the range is derived from tau; an explicit one must describe [tau, T]
            if rng.high != NUM_TRAIN_TIMESTEPS:
                raise ConfigError(
                    f"the timestep recipe trains on [tau, {NUM_TRAIN_TIMESTEPS}]: give tau instead of "
                    f"train_timesteps {rng} (or a range ending at {NUM_TRAIN_TIMESTEPS})"
                )
            if self.tau is None:
                self.tau, self.tau_unit = rng.low, rng.unit
            elif rng.unit == self.tau_unit and abs(rng.low - self.tau) > 1e-6:
                raise ConfigError(f"train_timesteps {rng} disagrees with tau={self.tau:g}; give only tau")


def folder_default_tau(source: str) -> tuple[float, str] | None:
    """``(tau, unit)`` from a model folder's ``motiontune_defaults.json``, or None."""
    from motiontune.backbones.base import DEFAULTS_FILE

    path = os.path.join(source, DEFAULTS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict) or data.get(DEFAULTS_TAU_KEY) is None:
        return None
    unit = str(data.get(DEFAULTS_TAU_UNIT_KEY, "native"))
    try:
        tau = float(data[DEFAULTS_TAU_KEY])
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: {DEFAULTS_TAU_KEY} must be a number (got {data[DEFAULTS_TAU_KEY]!r})") from exc
    if unit not in TAU_UNITS or not 0 <= tau <= NUM_TRAIN_TIMESTEPS:
        raise ModelLoadError(f"{path}: {DEFAULTS_TAU_KEY}={tau:g} ({unit}) is not a timestep in [0, {NUM_TRAIN_TIMESTEPS}]")
    return tau, unit


def native_tau(tau: float, unit: str, spec: "BackboneSpec") -> float:
    """``tau`` in the backbone's native units (a DDPM timestep maps at equal SNR on flow models)."""
    if unit == "ddpm" and spec.schedule.prediction_type == "flow":
        return ddpm_to_flow_t(tau)
    return float(tau)


def default_attention(spec: "BackboneSpec") -> tuple[str, ...]:
    """Temporal attention where the backbone has it, else its joint spatio-temporal attention."""
    if spec.sites("temporal"):
        return ("temporal",)
    if spec.sites("joint"):
        return ("joint",)
    have = sorted({s.kind for s in spec.attention_sites()})
    raise ConfigError(f"{spec.family} has neither temporal nor joint attention (it has: {', '.join(have)}); set attention")


class TimestepRecipe(Recipe):
    name = "timestep"
    summary = "one LoRA (or full fine-tuning) trained and applied only at t >= tau (timestep-constrained motion)"
    config_cls = TimestepRecipeConfig

    def __init__(self, config: TimestepRecipeConfig | None = None, **overrides: Any):
        super().__init__(config, **overrides)
        self.inner: LoraRecipe | FullRecipe | None = None
        self.tau_source: str | None = None

    # ---------------------------------------------------------------- tau
    def resolve_tau(self, spec: "BackboneSpec") -> tuple[float, str, str]:
        """``(tau, unit, where it came from)``: the settings, the model folder, or the family default."""
        if self.config.tau is not None:
            return self.config.tau, self.config.tau_unit, "settings"
        found = folder_default_tau(spec.source) if os.path.isdir(spec.source) else None
        if found is not None:
            return found[0], found[1], "model folder"
        tau, unit = FAMILY_TAU.get(spec.family, FALLBACK_TAU)
        return tau, unit, f"{spec.family} default"

    @property
    def tau_native(self) -> float:
        """The boundary in native units (after :meth:`apply`)."""
        if self.config.train_timesteps is None or self.spec is None:
            raise ConfigError("the timestep recipe resolves tau when applied to a backbone")
        return self.config.train_timesteps.native(self.spec.schedule)[0]

    # ---------------------------------------------------------------- injection
    def apply(self, spec: "BackboneSpec") -> None:
        if self.spec is spec:
            return
        cfg = self.config
        tau, unit, self.tau_source = self.resolve_tau(spec)
        low = native_tau(tau, unit, spec)
        given = cfg.train_timesteps
        if given is not None and abs(given.native(spec.schedule)[0] - low) > 1e-6:
            raise ConfigError(f"train_timesteps {given} disagrees with tau={tau:g} ({unit}); give only tau")
        cfg.tau, cfg.tau_unit = tau, unit
        # [tau, T] in native units: a "ddpm" range would map T itself below T on flow models
        cfg.train_timesteps = TimestepRange(low, float(NUM_TRAIN_TIMESTEPS), "native")
        cfg.attention = cfg.attention or default_attention(spec)
        shared = dict(
            attention=cfg.attention, projections=cfg.projections, learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay, scale=cfg.scale, train_timesteps=cfg.train_timesteps,
            infer_timesteps=cfg.infer_timesteps,
        )
        if cfg.mode == "lora":
            inner: LoraRecipe | FullRecipe = LoraRecipe(
                LoraRecipeConfig(rank=cfg.rank, alpha=cfg.alpha, dropout=cfg.dropout, **shared)
            )
        else:
            inner = FullRecipe(FullRecipeConfig(**shared))
        inner.apply(spec)
        self.inner = inner
        super().apply(spec)

    def _require_applied(self) -> LoraRecipe | FullRecipe:
        if self.inner is None:
            raise ConfigError("the timestep recipe is not applied to a backbone yet (call apply(spec))")
        return self.inner

    def named_trainable(self) -> dict[str, torch.nn.Parameter]:
        return self._require_applied().named_trainable()

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {**group, "lr": self.config.learning_rate, "weight_decay": self.config.weight_decay}
            for group in self._require_applied().param_groups()
        ]

    # ---------------------------------------------------------------- inference
    def set_adapter_scale(self, scale: float) -> None:
        self._require_applied().set_adapter_scale(scale)

    # ---------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._require_applied().state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        inner = self._require_applied()
        inner.load_state_dict(state)
        if isinstance(inner, FullRecipe):
            inner._tuned, inner._scale = None, 1.0

    @property
    def weights_name(self) -> str:
        from motiontune.adapters.lora import LORA_WEIGHTS_NAME

        return LORA_WEIGHTS_NAME if self.config.mode == "lora" else FULL_WEIGHTS_NAME

    def save(self, folder: str, metadata: dict[str, Any] | None = None) -> None:
        inner = self._require_applied()
        inner.save(folder, metadata)  # the weights (LoRA: loadable by diffusers' load_lora_weights)
        write_recipe_json(folder, self, {**(metadata or {}), "weights": self.weights_name})

    def load_weights(self, folder: str) -> None:
        self._require_applied().load_weights(folder)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.spec is not None:
            out["tau_native"] = self.tau_native
            out["tau_source"] = self.tau_source
        return out
