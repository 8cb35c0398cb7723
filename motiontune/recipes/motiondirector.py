"""``motiondirector``: the dual-path baseline (MotionDirector; METHODS.md, "Baseline").

Two named LoRA adapters, trained together in every step with one optimizer each:

* ``spatial`` learns the appearance from single random frames of the reference clip(s)
  (a one-frame forward, horizontal flip with probability ``flip``), with the ``temporal``
  adapter switched off for that pass; plain diffusion loss;
* ``temporal`` learns the motion from the whole clip with the appearance-debiased loss (the
  diffusion loss plus the MSE of ``alpha * x - beta * x[anchor]`` of prediction and target,
  a random anchor frame, ``beta = 1``, ``alpha = sqrt(beta**2 + 1) = sqrt(2)``). With probability
  ``spatial_dropout`` (0.2) a step drops the spatial adapter: it is switched off in the temporal
  pass and not trained in that step (as the authors' code does); otherwise it runs in the temporal
  pass without being trained by it.

At inference only the temporal adapter is applied (and, by default, only it is shipped in the
adapter folder: ``ship`` adds the spatial one). Placement: on backbones with separate attentions
(ModelScope/ZeroScope ``unet3d``, ``latte``) the spatial adapter goes on the spatial self- and
cross-attention and the temporal one on the temporal attention, as in the authors' code; on the
DiTs (Wan, CogVideoX, HunyuanVideo, the toy model) both are named adapters on the same joint
attention.

Defaults follow the authors' config for one clip: rank 32, LoRA dropout 0.1, learning rate 5e-4,
weight decay 1e-2, 150 steps (when ``--steps`` is not given); the toy
model's own learning rate where its folder gives one (``default_learning_rate``). ``alpha``
defaults to the rank (LoRA scale 1, as in the authors' LoRA layers).

Optional inversion noise prior at inference (``noise_prior``, or ``generate --noise-prior``; 0 =
off, the authors use 0.5): the reference clip recorded in the adapter folder is read again at
its training size, encoded and inverted with its caption (the probe's inversion, with the
temporal adapter applied), and each video starts from
``sqrt(p) * inverted + sqrt(1 - p) * fresh noise`` (fresh noise seeded per prompt as usual).
Generation then has to keep the training size.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from motiontune.errors import ConfigError
from motiontune.losses import debiased_loss, diffusion_loss
from motiontune.recipes.base import LossContext, RecipeConfig
from motiontune.recipes.lora import PROJECTION_ROLES, _as_tuple
from motiontune.recipes.multi import AdapterDecl, NamedLoraRecipe, checked_kinds
from motiontune.training.plan import Pass, Stage

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

BRANCHES = ("spatial", "temporal")


@dataclass
class MotionDirectorConfig(RecipeConfig):
    rank: int = 32
    #: None: equal to the rank (LoRA scale 1)
    alpha: float | None = None
    dropout: float = 0.1
    learning_rate: float = 5e-4
    weight_decay: float = 1e-2
    #: probability that a step drops the spatial adapter (off in the temporal pass, not trained)
    spatial_dropout: float = 0.2
    #: horizontal flip probability of the spatial pass's frames
    flip: float = 0.5
    #: the debiased loss: beta, and alpha (None: sqrt(beta^2 + 1))
    beta: float = 1.0
    debias_alpha: float | None = None
    #: attention kinds of each adapter (None: per backbone, see the module docstring)
    spatial_attention: tuple[str, ...] | None = None
    temporal_attention: tuple[str, ...] | None = None
    projections: tuple[str, ...] = PROJECTION_ROLES
    #: adapters written to the adapter folder
    ship: tuple[str, ...] = ("temporal",)
    #: inference: share of the reference's inverted noise in the starting noise (0: off; authors 0.5)
    noise_prior: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"rank must be a whole number >= 1 (got {self.rank!r})")
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError(f"alpha must be a positive number (got {self.alpha!r})")
        for name in ("spatial_dropout", "flip", "dropout"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ConfigError(f"{name} must lie in [0, 1] (got {v!r})")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning_rate must be a positive number (got {self.learning_rate!r})")
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"beta must be a positive number (got {self.beta!r})")
        self.spatial_attention = checked_kinds(self.spatial_attention, "spatial_attention")
        self.temporal_attention = checked_kinds(self.temporal_attention, "temporal_attention")
        self.projections = _as_tuple(self.projections)
        bad = [p for p in self.projections if p not in PROJECTION_ROLES]
        if bad or not self.projections:
            raise ConfigError(f"unknown projection(s) {bad}; choose from {', '.join(PROJECTION_ROLES)}")
        self.noise_prior = self.checked_noise_prior(self.noise_prior)
        self.ship = _as_tuple(self.ship)
        bad = [b for b in self.ship if b not in BRANCHES]
        if bad or "temporal" not in self.ship:
            raise ConfigError(f"ship must name adapters among {', '.join(BRANCHES)} and include 'temporal' (got {', '.join(self.ship) or 'none'})")


    @staticmethod
    def checked_noise_prior(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"noise_prior must lie in [0, 1] (got {value!r})")
        return float(value)


def default_placement(spec: "BackboneSpec") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(spatial kinds, temporal kinds): separate attentions where the backbone has them, else joint."""
    if spec.sites("temporal") and spec.sites("spatial"):
        return ("spatial", "cross"), ("temporal",)
    if spec.sites("joint"):
        return ("joint",), ("joint",)
    have = sorted({s.kind for s in spec.attention_sites()})
    raise ConfigError(f"{spec.family} has neither spatial + temporal nor joint attention (it has: {', '.join(have)})")


class MotionDirectorRecipe(NamedLoraRecipe):
    name = "motiondirector"
    summary = "dual-path LoRA: spatial on single frames, temporal on the clip with the appearance-debiased loss (baseline)"
    config_cls = MotionDirectorConfig
    inference_adapters = ("temporal",)
    default_steps = 150

    def adapter_plan(self, spec: "BackboneSpec") -> dict[str, AdapterDecl]:
        cfg = self.config
        spatial, temporal = default_placement(spec)
        alpha = float(cfg.rank if cfg.alpha is None else cfg.alpha)
        return {
            "spatial": AdapterDecl(cfg.spatial_attention or spatial, cfg.projections, cfg.rank, alpha, cfg.dropout),
            "temporal": AdapterDecl(cfg.temporal_attention or temporal, cfg.projections, cfg.rank, alpha, cfg.dropout),
        }

    def shipped_adapters(self) -> list[str]:
        return [n for n in self.config.ship if n in self._require().names]

    def stages(self) -> list[Stage]:
        return [Stage(name="dual-path")]

    def passes(self, step: int, stage: Stage, generator: torch.Generator) -> list[Pass]:
        drop = float(torch.rand((), generator=generator)) < self.config.spatial_dropout
        temporal = Pass(pool="video", train=("temporal",), scales={"spatial": 0.0 if drop else 1.0}, name="temporal")
        if drop:
            return [temporal]
        spatial = Pass(pool="frame", train=("spatial",), scales={"temporal": 0.0}, name="spatial", flip=self.config.flip)
        return [spatial, temporal]

    def losses(self, ctx: LossContext) -> dict[str, torch.Tensor]:
        plain = diffusion_loss(ctx.prediction, ctx.target, ctx.weight)
        if ctx.pass_name != "temporal":
            return {"diffusion": plain}
        return {"diffusion": plain,
                "debiased": debiased_loss(ctx.prediction, ctx.target, ctx.extras["generator"], self.config.beta, self.config.debias_alpha)}

    def initial_latents(self, spec: "BackboneSpec", sampling: Any, prompts: list[str], metadata: dict[str, Any]) -> torch.Tensor | None:
        p = self.config.noise_prior
        if p <= 0:
            return None
        from motiontune.data.frames import prepare_video
        from motiontune.diffusion.sampling import initial_noise
        from motiontune.probe.inversion import encode, invert

        refs = metadata.get("references", {})
        videos, captions, size = refs.get("videos") or [], refs.get("captions") or [], metadata.get("size")
        if not videos or not size:
            raise ConfigError("noise_prior needs the reference clip and its size recorded in the adapter folder; this one has none")
        path = videos[0]
        if not os.path.isfile(path) and not os.path.isdir(path):
            raise ConfigError(f"noise_prior needs the reference clip {path}, which is not there")
        f, h, w = (int(v) for v in size)
        if (sampling.num_frames, sampling.height, sampling.width) != (f, h, w):
            raise ConfigError(f"noise_prior needs the training size {f}x{h}x{w} (frames x height x width); "
                              f"got {sampling.num_frames}x{sampling.height}x{sampling.width}")
        taken = metadata.get("frames") or {}  # the frames and resize of training (absent in older folders)
        pixels = prepare_video(path, f, h, w, frame_rule=spec.frame_rule, sampling=taken.get("sampling", "uniform"),
                               stride=taken.get("stride"), start=taken.get("start", 0), end=taken.get("end"),
                               resize_mode=taken.get("resize_mode", "center_crop"))
        inversion = invert(spec, encode(spec, pixels), captions[0] if captions else "", sampling.num_inference_steps, recipe=self)
        inverted = inversion.latents[0].float().cpu()
        fresh = initial_noise(spec, sampling, len(prompts)).float().cpu()
        return math.sqrt(p) * inverted + math.sqrt(1.0 - p) * fresh

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.spec is not None:
            out["placement"] = {n: list(d.attention) for n, d in self.adapter_plan(self.spec).items()}
        return out
