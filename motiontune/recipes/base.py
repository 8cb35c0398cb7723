"""The recipe interface: how a customization method plugs into the shared trainer and sampler.

A recipe

* injects its modules into the backbone (:meth:`Recipe.apply`),
* declares its trainable parameters and optimizer groups (:meth:`Recipe.param_groups`),
* constrains training timesteps (``config.train_timesteps``, a :class:`TimestepRange`) —
  a general option of every recipe,
* picks what each step trains on (:meth:`Recipe.batch_kind`: ``"video"`` or ``"image"``),
* adds loss terms (:meth:`Recipe.losses`), edits gradients (:meth:`Recipe.after_backward`),
* sets its inference schedule (:meth:`Recipe.adapter_scale` as a function of t, by default
  1 inside ``config.infer_timesteps`` and 0 outside),
* saves and loads itself (:meth:`Recipe.save`, :func:`load_recipe`) as safetensors plus a
  JSON file holding every setting needed to reproduce a generation.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from motiontune.diffusion.schedules import TimestepRange
from motiontune.errors import ConfigError

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

RECIPE_FILE = "motiontune.json"


@dataclass
class RecipeConfig:
    """Settings shared by every recipe."""

    #: train only on timesteps in this range (native units; "700:1000"); None = all
    train_timesteps: Any = None
    #: apply the adapters at inference only while t is in this range; None = same as training
    infer_timesteps: Any = None
    #: adapter scale while active
    scale: float = 1.0
    #: base learning rate (the trainer's --lr overrides it when given)
    learning_rate: float = 1e-4
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        self.train_timesteps = TimestepRange.parse(self.train_timesteps)
        self.infer_timesteps = TimestepRange.parse(self.infer_timesteps)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, TimestepRange):
                v = {"low": v.low, "high": v.high, "unit": v.unit}
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RecipeConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) for this recipe: {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)


@dataclass
class LossContext:
    """What loss terms see for one training step."""

    spec: "BackboneSpec"
    kind: str  # "video" or "image"
    x0: torch.Tensor
    noise: torch.Tensor
    x_t: torch.Tensor
    t: torch.Tensor
    cond: dict[str, torch.Tensor]
    prediction: torch.Tensor
    target: torch.Tensor
    step: int
    extras: dict[str, Any] = field(default_factory=dict)
    #: per-element loss weights broadcastable to ``prediction`` (from the samples' ``loss_weight``), or None
    weight: torch.Tensor | None = None


class Recipe:
    """Base class of every method; subclasses are registered in :mod:`motiontune.recipes`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    config_cls: ClassVar[type[RecipeConfig]] = RecipeConfig

    def __init__(self, config: RecipeConfig | None = None, **overrides: Any):
        if config is None:
            config = self.config_cls.from_dict(overrides)
        elif overrides:
            config = self.config_cls.from_dict({**config.to_dict(), **overrides})
        self.config = config
        self.spec: BackboneSpec | None = None

    # ---------------------------------------------------------------- injection
    def apply(self, spec: "BackboneSpec") -> None:
        """Inject this recipe's modules into ``spec.denoiser`` (idempotent per spec)."""
        self.spec = spec

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for g in self.param_groups() for p in g["params"]]

    def param_groups(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def named_trainable(self) -> dict[str, torch.nn.Parameter]:
        """Trainable parameters by a stable name (used for checkpoints)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- training
    @property
    def train_range(self) -> TimestepRange | None:
        return self.config.train_timesteps

    def batch_kind(self, step: int, generator: torch.Generator) -> str:
        """What this step trains on: ``"video"`` (default) or ``"image"``."""
        return "video"

    def on_step_start(self, step: int, kind: str) -> None:
        """Called before the forward pass of each step."""

    def losses(self, ctx: LossContext) -> dict[str, torch.Tensor]:
        """Loss terms of one step; the trainer sums them. Default: the plain diffusion loss."""
        return {"diffusion": diffusion_loss(ctx.prediction, ctx.target, ctx.weight)}

    def after_backward(self, step: int, kind: str) -> None:
        """Called after backward and before the optimizer step (e.g. gradient masks)."""

    # ---------------------------------------------------------------- inference
    @property
    def infer_range(self) -> TimestepRange | None:
        return self.config.infer_timesteps if self.config.infer_timesteps is not None else self.config.train_timesteps

    def adapter_scale(self, t: float) -> float:
        """Adapter scale at native timestep ``t`` during sampling."""
        rng = self.infer_range
        if rng is None or self.spec is None or rng.contains(t, self.spec.schedule):
            return self.config.scale
        return 0.0

    def set_adapter_scale(self, scale: float) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.named_trainable().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = self.named_trainable()
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise ConfigError(
                f"adapter weights do not match the {self.name} recipe: {len(missing)} missing, {len(unexpected)} unexpected"
                + (f" (e.g. {(missing or unexpected)[0]})" if missing or unexpected else "")
            )
        with torch.no_grad():
            for k, p in params.items():
                if p.shape != state[k].shape:
                    raise ConfigError(f"adapter weight {k} has shape {tuple(state[k].shape)}, expected {tuple(p.shape)}")
                p.copy_(state[k].to(p.dtype))

    def save(self, folder: str, metadata: dict[str, Any] | None = None) -> None:
        """Write the weights and ``motiontune.json``; see :func:`write_recipe_json`."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        n = sum(p.numel() for p in self.trainable_parameters()) if self.spec is not None else None
        return {"recipe": self.name, "trainable_parameters": n, "config": self.config.to_dict()}


def diffusion_loss(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error; with ``weight`` (broadcastable to ``prediction``), the weighted mean
    ``sum(w * e^2) / sum(w)``, so that uniform weights give the plain loss."""
    err = (prediction.float() - target.float()) ** 2
    if weight is None:
        return err.mean()
    w = weight.float().expand_as(err)
    return (w * err).sum() / w.sum().clamp_min(1e-12)


def write_recipe_json(folder: str, recipe: Recipe, metadata: dict[str, Any] | None = None) -> str:
    """Atomically write ``motiontune.json`` (recipe, its settings and the run's metadata)."""
    from motiontune.utils.files import atomic_write_text

    data = {
        "format": 1,
        "recipe": recipe.name,
        "config": recipe.config.to_dict(),
        **(metadata or {}),
    }
    path = os.path.join(folder, RECIPE_FILE)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))
    return path


def read_recipe_json(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, RECIPE_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"{folder}: no {RECIPE_FILE} here (not a motiontune adapter folder)")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg})") from exc
