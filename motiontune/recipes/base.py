"""The recipe interface: how a customization method plugs into the shared trainer and sampler.

A recipe

* injects its modules into the backbone (:meth:`Recipe.apply`),
* declares its trainable parameters and optimizer groups (:meth:`Recipe.param_groups`),
* constrains training timesteps (``config.train_timesteps``, a :class:`TimestepRange`) —
  a general option of every recipe,
* picks what each step trains on (:meth:`Recipe.batch_kind`: ``"video"`` or ``"image"``), or,
  for methods with several branches, lays out stages and passes (:meth:`Recipe.branches`,
  :meth:`Recipe.stages`, :meth:`Recipe.passes`, :meth:`Recipe.pools`; see
  :mod:`motiontune.training.plan`),
* may change the diffusion noise of training passes (:meth:`Recipe.training_noise`), adds loss
  terms (:meth:`Recipe.losses`, from :mod:`motiontune.losses`), edits gradients
  (:meth:`Recipe.after_backward`),
* may edit the text conditioning (:meth:`Recipe.condition`) and wrap every denoiser call in a
  context (:meth:`Recipe.forward_context`), in training, validation, sampling and the probe alike
  (:mod:`motiontune.hooks.call`),
* sets its inference schedule (:meth:`Recipe.adapter_scale` as a function of t, by default
  1 inside ``config.infer_timesteps`` and 0 outside; :meth:`Recipe.adapter_scales` gives one
  scale per named adapter),
* saves and loads itself (:meth:`Recipe.save`, :func:`load_recipe`) as safetensors plus a
  JSON file holding every setting needed to reproduce a generation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from motiontune.checks import MAX_LEARNING_RATE, MAX_RANK, MAX_SCALE, number
from motiontune.diffusion.schedules import TimestepRange
from motiontune.errors import ConfigError
from motiontune.losses import diffusion_loss
from motiontune.training.plan import Pass, Stage

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec, Conditioning
    from motiontune.data.dataset import Sample
    from motiontune.hooks.call import DenoiserCall

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
        self.scale = number("scale", self.scale, -MAX_SCALE, MAX_SCALE)
        self.learning_rate = number("learning_rate (--lr)", self.learning_rate, 0, MAX_LEARNING_RATE, low_open=True, optional=True)
        self.weight_decay = number("weight_decay", self.weight_decay, 0)
        # settings several recipes share, checked wherever a recipe has them
        if hasattr(self, "rank"):
            self.rank = number("rank", self.rank, 1, MAX_RANK, integer=True)
        if hasattr(self, "alpha"):
            self.alpha = number("alpha", self.alpha, 0, low_open=True, optional=True)
        if hasattr(self, "dropout"):
            self.dropout = number("dropout", self.dropout, 0, 1)
        for f in dataclasses.fields(self):  # any other number: finite, and no bool for a number
            value = getattr(self, f.name)
            numeric = any(t in str(f.type) for t in ("int", "float")) and "bool" not in str(f.type)
            if (numeric and isinstance(value, bool)) or (isinstance(value, float) and not math.isfinite(value)):
                raise ConfigError(f"{f.name} must be a finite number (got {value!r})")

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
    #: the pass of the step (``Pass.name``) and its data pool
    pass_name: str = ""
    pool: str = "video"


class Recipe:
    """Base class of every method; subclasses are registered in :mod:`motiontune.recipes`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    config_cls: ClassVar[type[RecipeConfig]] = RecipeConfig
    #: optimizer steps when the user gives none (None: the trainer's default)
    default_steps: ClassVar[int | None] = None
    #: branches that act only through other branches (a controller that weights adapters, which
    #: changes nothing while those are zero): ``{branch: (branches it acts through, ...)}``; the
    #: recipe matrix makes those non-zero before checking that the branch changes the output
    branch_prerequisites: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: the backbone families the recipe runs on (None: every family); it refuses the others in apply()
    supported_families: ClassVar[tuple[str, ...] | None] = None
    #: settings that make every branch act on a caption such as "a red circle moves left" (e.g. the
    #: caption's subject and motion phrases); the recipe matrix builds the recipe with them
    example_settings: ClassVar[dict[str, Any]] = {}
    #: whether the recipe learns from still images (``--image``); one that does not refuses them
    #: before the model loads, and the bench plans none of its cells on a scenario that has images
    accepts_images: ClassVar[bool] = True

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

    def prepare_training(self, spec: "BackboneSpec", data: Any, config: Any) -> None:
        """Called by the trainer before :meth:`apply` with the training data and the run's
        ``TrainConfig`` (a recipe whose layout depends on the references, e.g. on heads classified
        from them, works it out here). Default: nothing."""

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for g in self.param_groups() for p in g["params"]]

    def param_groups(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def named_trainable(self) -> dict[str, torch.nn.Parameter]:
        """Trainable parameters by a stable name (used for checkpoints)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- branches, stages, passes
    def branches(self) -> dict[str, dict[str, torch.nn.Parameter]]:
        """Trainable parameters by branch (each branch has its own optimizer). Default: one
        branch, ``"default"``, holding :meth:`named_trainable`."""
        return {"default": self.named_trainable()}

    def branch_settings(self, branch: str) -> dict[str, Any]:
        """Learning rate and weight decay of ``branch`` (default: the recipe's)."""
        return {"lr": self.config.learning_rate, "weight_decay": self.config.weight_decay}

    def adapter_names(self) -> list[str]:
        """Named adapters whose scale :meth:`set_adapter_scales` sets (empty: one unnamed adapter)."""
        return []

    def stages(self) -> list[Stage]:
        """The run's stages; default one stage over all steps, training every branch on clips."""
        return [Stage()]

    def passes(self, step: int, stage: Stage, generator: torch.Generator) -> list[Pass]:
        """The passes of ``step``. ``generator`` is seeded by the run's seed and the step only (the
        same on every process). Default: one pass on the stage's pool (or :meth:`batch_kind`)."""
        kind = self.batch_kind(step, generator) if stage.pool == "video" else stage.pool
        return [Pass(pool=kind, train=stage.train)]

    def pools(self) -> dict[str, Callable[[Any, torch.Generator, int], "list[Sample]"]]:
        """Extra data pools of this recipe: name -> ``draw(data, generator, n) -> samples``."""
        return {}

    @property
    def train_range(self) -> TimestepRange | None:
        return self.config.train_timesteps

    #: set by the trainer: the run has reference images as well as clips
    images_with_videos: bool = False

    def batch_kind(self, step: int, generator: torch.Generator) -> str:
        """What this step trains on: ``"video"`` or ``"image"``. Default: clips; when reference
        images were given beside the clips, images on even steps and clips on odd steps (so a
        plain recipe learns from both, e.g. ``lora`` on a subject's images and a motion clip)."""
        if self.images_with_videos:
            return "image" if step % 2 == 0 else "video"
        return "video"

    # ---------------------------------------------------------------- hooks (every phase)
    def condition(self, cond: "Conditioning", call: "DenoiserCall") -> "Conditioning":
        """Edit the text conditioning before the denoiser sees it (default: unchanged)."""
        return cond

    def forward_context(self, call: "DenoiserCall") -> contextlib.AbstractContextManager:
        """A context entered around every denoiser call (default: none)."""
        return contextlib.nullcontext()

    def training_noise(self, noise: torch.Tensor, kind: str, pass_name: str, generator: torch.Generator) -> torch.Tensor:
        """The diffusion noise of a training pass, before it makes the noisy input and the target
        (default: unchanged, drawing nothing from ``generator``). ``kind`` is the pool the batch
        came from ("video", "image", ...), ``generator`` the pass's seeded generator."""
        return noise

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

    def adapter_scales(self, t: float) -> dict[str, float]:
        """Scale of each named adapter at native timestep ``t`` (default: :meth:`adapter_scale` for all)."""
        s = self.adapter_scale(t)
        return {name: s for name in self.adapter_names()}

    def set_adapter_scales(self, scales: dict[str, float]) -> None:
        """Set named adapters' scales (recipes with named adapters override this)."""
        if scales:
            raise ConfigError(f"the {self.name} recipe has no named adapters (got {', '.join(scales)})")

    def apply_schedule(self, t: float, scale_fn: Callable[[float], float] | None = None) -> None:
        """Set the adapter scale(s) for the denoiser call at ``t`` (sampling)."""
        if scale_fn is not None:
            self.set_adapter_scale(scale_fn(t))
        elif self.adapter_names():
            self.set_adapter_scales(self.adapter_scales(t))
        else:
            self.set_adapter_scale(self.adapter_scale(t))

    def initial_latents(self, spec: "BackboneSpec", sampling: Any, prompts: list[str], metadata: dict[str, Any]) -> torch.Tensor | None:
        """Starting latents for generating ``prompts`` (None: fresh seeded noise, the default)."""
        return None

    def reset_schedule(self) -> None:
        """Back to the scales of training (after sampling)."""
        if self.adapter_names():
            self.set_adapter_scales({n: self.config.scale for n in self.adapter_names()})
        else:
            self.set_adapter_scale(self.config.scale)

    # ---------------------------------------------------------------- persistence
    def prepare_load(self, info: dict[str, Any], folder: str) -> None:
        """Called with a folder's ``motiontune.json`` before :meth:`apply` when loading it."""

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
    from motiontune.utils.files import read_text

    try:
        info = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg})") from exc
    if not isinstance(info, dict) or not isinstance(info.get("recipe"), str):
        raise ConfigError(f"{path}: not a motiontune adapter file (expected an object with a \"recipe\" name)")
    return info
