"""``follow_your_motion``: spatial-temporal decoupled LoRA on the heads of joint attention, sparse
motion sampling with adaptive RoPE and a motion loss (Follow-Your-Motion; METHODS.md section 5 and
"What the public code does"; docs/methods/follow_your_motion.md).

* **Head types** (:mod:`motiontune.analysis.heads`): before the adapters are injected, every head
  of every joint self-attention is classified spatial or temporal from one forward pass of the
  first reference clip at a high-noise timestep (``head_timestep``; default the second timestep of
  the sampler's schedule): the paper's cosine criterion (``head_criterion="cosine"``, temporal if
  ``Sim_s < head_alpha * Sim_t``, alpha 1.3) or the code's mass criterion (``"mass"``). Or the types
  come from a file written by ``motiontune heads`` (``head_types=PATH``). ``head_split="half"``
  skips the classification (first half of each layer's heads spatial, the rest temporal); it is
  also what a recipe applied without training data, or a reference too small to classify (fewer
  than 2 latent frames of 2 tokens), falls back to, with a warning. A classification that leaves
  either branch empty is refused. The adapter folder records the types (``head_types.json``);
  loading it onto a model with another layer or head count is refused.
* **Head-split LoRA** (:mod:`motiontune.adapters.head_split`): two named adapters, ``spatial`` and
  ``temporal``, each a LoRA on the q, k, v output rows and the o input columns of its heads; one
  full attention; biases and base weights untouched; a no-op at initialisation. ``head_split="none"``
  (the paper's "w/o STD LoRA" ablation) gives both adapters every head. On HunyuanVideo's
  single-stream blocks (no o inside the attention) only q, k, v are split; the text stream's own
  projections (``add_q_proj`` ...) are left alone. On Latte and UNet3D, which have explicit
  temporal attention, nothing is classified: ``spatial`` is a LoRA on the spatial self-attentions and
  ``temporal`` one on the temporal attentions.
* **Stage 1** ``spatial`` (pool ``frame``: one random frame, encoded alone, a text-to-image task;
  the temporal adapter off): trains ``spatial``. **Stage 2** ``temporal`` (pool ``video``, every
  ``sparse_stride``-th frame from a random offset, cut to the backbone's frame rule; the spatial
  adapter on and frozen): trains ``temporal`` with the diffusion loss plus ``motion_weight`` times the
  motion loss (:func:`motiontune.losses.motion.motion_loss`; ``motion_loss="cosine"`` the paper's,
  ``"abs"`` the code's, ``"none"`` off). Adaptive RoPE (``adaptive_rope``): a sampled clip of
  ``F_samp`` temporal tokens (latent frames after temporal patching) taken from a reference of ``F``
  gets the positions ``F/2 + (F/F_samp)(i - F_samp/2)``, through the temporal-positions interface
  (:mod:`motiontune.hooks.positions`); ``adaptive_rope=False`` keeps the raw positions ``0..F_samp-1``
  (the ablation). On CogVideoX-2B the positions move its absolute sin-cos table (the same formula
  evaluated in the table); UNet3D encodes no frame positions, so there it has no effect (warned).
  ``sparse_stride=1`` is the "w/o sparse sampling" ablation; a reference too short for the stride is
  refused before training, and so is a stride above 1 on Latte, which takes a fixed frame count. The spatial stage takes ``spatial_steps`` steps (default
  ``spatial_share`` of the run, the paper's 3000 of 5000).
* **Inference**: only ``temporal`` is shipped and applied, at weight ``lora_weight`` (0.5) times the
  adapter scale.

Settings (paper / ``preset=code``): rank 128 / 16, alpha = rank, lr 1e-5 / 1e-4, weight decay 0.1
(spatial) and 0.99 / 0.5 (temporal), 5000 steps (3000 + 2000) / 3000 (1500 + 1500). The toy model's
learning rate comes from its folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import ClassVar, TYPE_CHECKING, Any

import torch

from motiontune.analysis.heads import (
    CRITERIA,
    DEFAULT_ALPHA,
    HEAD_TYPES_FILE,
    HeadTypes,
    check_grid,
    classify_heads,
    fixed_split,
)
from motiontune.adapters.base import AdapterSet
from motiontune.adapters.head_split import head_channels
from motiontune.checks import MAX_RANK, MAX_STEPS, number
from motiontune.errors import ConfigError
from motiontune.losses import diffusion_loss
from motiontune.losses.motion import MOTION_LOSSES, motion_loss
from motiontune.recipes.base import LossContext, Recipe, RecipeConfig, write_recipe_json
from motiontune.recipes.lora import PROJECTION_ROLES
from motiontune.recipes.multi import AdapterDecl, NamedLoraRecipe
from motiontune.training.plan import Pass, Stage

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec
    from motiontune.hooks.call import DenoiserCall

log = logging.getLogger("motiontune")

BRANCHES = ("spatial", "temporal")
HEAD_SPLITS = ("classify", "half", "none")
PRESETS: dict[str, dict[str, Any]] = {
    # the paper (section 4.1): rank 128 both stages, lr 1e-5, ~3000 + 2000 steps, weight decay 0.1 / 0.99
    "paper": {"rank": 128, "learning_rate": 1e-5, "temporal_weight_decay": 0.99, "steps": 5000},
    # the unofficial code's README: rank 16, lr 1e-4, 500 steps x 3 epochs per stage, weight decay 0.1 / 0.5
    "code": {"rank": 16, "learning_rate": 1e-4, "temporal_weight_decay": 0.5, "steps": 3000},
}


@dataclass
class FollowYourMotionConfig(RecipeConfig):
    #: "paper" (default) or "code": fills in the settings left unset
    preset: str = "paper"
    rank: int | None = None
    #: None: equal to the rank (LoRA scale 1)
    alpha: float | None = None
    dropout: float = 0.0
    learning_rate: float | None = None
    spatial_weight_decay: float = 0.1
    temporal_weight_decay: float | None = None
    #: steps of the spatial stage (None: spatial_share of the run's steps)
    spatial_steps: int | None = None
    spatial_share: float = 0.6
    #: horizontal flip probability of the spatial stage's frames (the paper: none)
    flip: float = 0.0
    #: sparse motion sampling: every k-th frame in the temporal stage (1: every frame)
    sparse_stride: int = 5
    #: the sparse clip at the positions it spans in the full clip (False: raw 0..n-1)
    adaptive_rope: bool = True
    #: "cosine" (the paper), "abs" (the code) or "none"
    motion_loss: str = "cosine"
    motion_weight: float = 1.0
    #: "classify" (the paper), "half" (a fixed split, no classification) or "none" (every head in both branches)
    head_split: str = "classify"
    #: a head types file (``motiontune heads``) instead of classifying
    head_types: str | None = None
    head_criterion: str = "cosine"
    head_alpha: float = DEFAULT_ALPHA
    #: native timestep of the classification pass (None: the sampler's second timestep)
    head_timestep: float | None = None
    head_chunk: int = 256
    head_seed: int = 0
    #: inference weight of the temporal LoRA (times the adapter scale)
    lora_weight: float = 0.5
    projections: tuple[str, ...] = PROJECTION_ROLES

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        base = PRESETS[self.preset]
        for key in ("rank", "learning_rate", "temporal_weight_decay"):
            if getattr(self, key) is None:
                setattr(self, key, base[key])
        super().__post_init__()
        self.rank = number("rank", self.rank, 1, MAX_RANK, integer=True)
        self.sparse_stride = number("sparse_stride", self.sparse_stride, 1, 10_000, integer=True)
        self.spatial_steps = number("spatial_steps", self.spatial_steps, 1, MAX_STEPS, integer=True, optional=True)
        self.spatial_share = number("spatial_share", self.spatial_share, 0, 1, low_open=True)
        self.flip = number("flip", self.flip, 0, 1)
        self.motion_weight = number("motion_weight", self.motion_weight, 0)
        self.spatial_weight_decay = number("spatial_weight_decay", self.spatial_weight_decay, 0)
        self.temporal_weight_decay = number("temporal_weight_decay", self.temporal_weight_decay, 0)
        self.head_alpha = number("head_alpha", self.head_alpha, 0, low_open=True)
        self.head_timestep = number("head_timestep", self.head_timestep, 0, 1000, optional=True)
        self.head_chunk = number("head_chunk", self.head_chunk, 1, 1 << 20, integer=True)
        self.head_seed = number("head_seed", self.head_seed, 0, 2**31 - 1, integer=True)
        self.lora_weight = number("lora_weight", self.lora_weight, -10, 10)
        if self.motion_loss not in MOTION_LOSSES:
            raise ConfigError(f"unknown motion_loss {self.motion_loss!r}; choose from {', '.join(MOTION_LOSSES)}")
        if self.head_split not in HEAD_SPLITS:
            raise ConfigError(f"unknown head_split {self.head_split!r}; choose from {', '.join(HEAD_SPLITS)}")
        if self.head_criterion not in CRITERIA:
            raise ConfigError(f"unknown head_criterion {self.head_criterion!r}; choose from {', '.join(CRITERIA)}")
        if not isinstance(self.adaptive_rope, bool):
            raise ConfigError(f"adaptive_rope must be true or false (got {self.adaptive_rope!r})")
        if self.head_types is not None and (not isinstance(self.head_types, str) or not self.head_types):
            raise ConfigError(f"head_types must be the path of a head types file (got {self.head_types!r})")
        from motiontune.recipes.lora import _as_tuple

        self.projections = _as_tuple(self.projections)
        bad = [p for p in self.projections if p not in PROJECTION_ROLES]
        if bad or not self.projections:
            raise ConfigError(f"unknown projection(s) {bad}; choose from {', '.join(PROJECTION_ROLES)}")

    @property
    def steps(self) -> int:
        return int(PRESETS[self.preset]["steps"])


def separate_attention(spec: "BackboneSpec") -> bool:
    """Whether the backbone has explicit spatial and temporal attentions (Latte, UNet3D)."""
    return bool(spec.sites("temporal")) and bool(spec.sites("spatial"))


def sparse_positions(full: int, sampled: int) -> torch.Tensor:
    """Adaptive RoPE: ``F/2 + (F/F_samp)(i - F_samp/2)`` for ``i = 0 .. F_samp-1`` (float64)."""
    i = torch.arange(sampled, dtype=torch.float64)
    return full / 2 + (full / sampled) * (i - sampled / 2)


class FollowYourMotionRecipe(NamedLoraRecipe):
    name = "follow_your_motion"
    summary = ("spatial/temporal LoRA on classified attention heads: spatial stage on single frames, temporal stage on "
               "every k-th frame with adaptive RoPE and a motion loss")
    config_cls = FollowYourMotionConfig
    inference_adapters = ("temporal",)
    default_steps = PRESETS["paper"]["steps"]
    #: the recipe matrix's clips have 4-5 frames: too short for the default every-5th-frame sampling
    #: (tests/test_follow_your_motion.py trains it sparse on longer clips)
    example_settings: ClassVar[dict[str, Any]] = {"sparse_stride": 1}

    def __init__(self, config=None, **overrides: Any):
        super().__init__(config, **overrides)
        self.default_steps = self.config.steps
        self.head_types: HeadTypes | None = None
        self._head_source = ""
        self._total_steps: int | None = None
        self._full_frames: int | None = None  # temporal tokens of the full reference clip
        self._positions_ok = True

    # ------------------------------------------------------------------ before training
    def prepare_training(self, spec: "BackboneSpec", data: Any, config: Any) -> None:
        cfg = self.config
        self._total_steps = int(config.steps)
        if self._total_steps < 2 and cfg.spatial_steps is None:
            raise ConfigError(f"the {self.name} recipe has two stages: it needs steps >= 2 (got {self._total_steps})")
        videos = [s for s in getattr(data, "videos", []) if s.pixels is not None or s.latents is not None]
        self._check_stride(spec, videos)
        if videos:
            s = videos[0]
            n = s.pixels.shape[1] if s.pixels is not None else None
            if n is not None:
                f = spec.latent_shape(n, *s.pixels.shape[-2:])[2] if spec.frame_rule.is_valid(n) else n
            else:
                f = s.latents.shape[1]
            self._full_frames = spec.temporal_tokens(f)
        if cfg.adaptive_rope and cfg.sparse_stride > 1:
            try:
                with spec.temporal_position_context([0.0, 0.5]):
                    pass
            except ConfigError:
                self._positions_ok = False
                log.warning("%s encodes no frame positions: adaptive RoPE has no effect there", spec.family)
        if separate_attention(spec) or cfg.head_split != "classify":
            return
        if cfg.head_types:
            types = HeadTypes.load(cfg.head_types)
            types.check(spec, cfg.head_types)
            types.require_both(f"{cfg.head_types}")
            self.head_types, self._head_source = types, cfg.head_types
            return
        if not videos:
            return  # apply() falls back to the fixed split, with a warning
        sample = videos[0]
        if sample.latents is not None:
            x0 = sample.latents.float().unsqueeze(0)
        else:
            with torch.no_grad():
                x0 = spec.encode_video(sample.pixels.unsqueeze(0)).float()
        layout = spec.token_layout(tuple(x0.shape))
        try:
            check_grid(layout.frames, layout.tokens_per_frame, f"the reference {sample.source}")
        except ConfigError as exc:
            log.warning("%s; using the fixed half split of the heads instead", exc)
            return
        types = classify_heads(spec, x0, sample.caption, timestep=cfg.head_timestep, criterion=cfg.head_criterion,
                               alpha=float(cfg.head_alpha), chunk=cfg.head_chunk, seed=cfg.head_seed)
        types.require_both()
        self.head_types, self._head_source = types, f"classified from {sample.source}"
        log.info("head types (%s): %d temporal, %d spatial heads", cfg.head_criterion, types.count("temporal"), types.count("spatial"))

    def _check_stride(self, spec: "BackboneSpec", videos: list) -> None:
        from motiontune.training.trainer import usable_frames

        k = self.config.sparse_stride
        if k == 1:
            return
        if spec.frame_rule.fixed is not None and videos:
            raise ConfigError(f"{spec.family} takes exactly {spec.frame_rule.fixed} frames: sparse sampling cannot shorten its "
                              f"clips; train it with sparse_stride=1")
        for s in videos:
            if s.pixels is None:
                continue
            n = s.pixels.shape[1]
            for offset in range(k):
                have = len(range(min(offset, n - 1), n, k))
                if usable_frames(have, spec.frame_rule) < 2:
                    raise ConfigError(f"{s.source}: {n} frames are too few for sparse_stride={k} (every {k}-th frame from frame "
                                      f"{offset} leaves {have}; this backbone needs {spec.frame_rule.describe()}): give a longer "
                                      f"reference or a smaller sparse_stride")

    # ------------------------------------------------------------------ injection
    def adapter_plan(self, spec: "BackboneSpec") -> dict[str, AdapterDecl]:
        """Latte and UNet3D: a LoRA on the spatial self-attentions and one on the temporal attentions."""
        cfg = self.config
        alpha = float(cfg.rank if cfg.alpha is None else cfg.alpha)
        return {"spatial": AdapterDecl(("spatial",), cfg.projections, cfg.rank, alpha, cfg.dropout),
                "temporal": AdapterDecl(("temporal",), cfg.projections, cfg.rank, alpha, cfg.dropout)}

    def resolved_head_types(self, spec: "BackboneSpec") -> HeadTypes | None:
        """The head types the adapters follow (None on Latte/UNet3D and with ``head_split="none"``)."""
        if separate_attention(spec) or self.config.head_split == "none":
            return None
        if self.head_types is None:
            if self.config.head_split == "classify":
                log.warning("the %s recipe has no head types (no reference classified, no head_types file): "
                            "using the fixed half split of the heads", self.name)
            self.head_types, self._head_source = fixed_split(spec), "fixed half split"
        return self.head_types

    def apply(self, spec: "BackboneSpec") -> None:
        if self.spec is spec:
            return
        if separate_attention(spec):
            super().apply(spec)
            return
        sites = spec.sites("joint")
        if not sites:
            have = sorted({s.kind for s in spec.attention_sites()})
            raise ConfigError(f"the {self.name} recipe needs joint or separate spatial/temporal attention; {spec.family} has {', '.join(have)}")
        types = self.resolved_head_types(spec)
        if types is not None:
            types.check(spec, self._head_source or "the head types")
            types.require_both(self._head_source or "head classification")
        modules = dict(spec.denoiser.named_modules())
        cfg = self.config
        alpha = float(cfg.rank if cfg.alpha is None else cfg.alpha)
        plan: dict[str, dict[str, tuple[str, list[int]]]] = {}
        for name in BRANCHES:
            if self._only is not None and name not in self._only:
                continue
            targets: dict[str, tuple[str, list[int]]] = {}
            for site in sites:
                heads = list(range(site.heads)) if types is None else types.heads_of(site.path, name)
                if not heads:
                    continue
                channels = head_channels(heads, site.head_dim)
                for role in cfg.projections:
                    if role not in site.projections:
                        continue
                    full = f"{site.path}.{site.projections[role]}"
                    layer = modules.get(full)
                    size = getattr(layer, "in_features" if role == "o" else "out_features", None)
                    if size != site.heads * site.head_dim:
                        raise ConfigError(f"{full}: {size} channels, not {site.heads} heads x {site.head_dim}: cannot split it by head")
                    targets[full] = ("columns" if role == "o" else "rows", channels)
            plan[name] = targets
        Recipe.apply(self, spec)
        self.adapters = AdapterSet(spec)
        for name, targets in plan.items():
            self.adapters.add_head_split_lora(name, targets, cfg.rank, alpha, cfg.dropout)

    # ------------------------------------------------------------------ training layout
    def branch_settings(self, branch: str) -> dict[str, Any]:
        wd = self.config.spatial_weight_decay if branch == "spatial" else self.config.temporal_weight_decay
        return {"lr": self.config.learning_rate, "weight_decay": wd}

    def spatial_steps(self) -> int:
        cfg = self.config
        if cfg.spatial_steps is not None:
            return cfg.spatial_steps
        total = self._total_steps or cfg.steps
        return max(1, min(total - 1, round(cfg.spatial_share * total)))

    def stages(self) -> list[Stage]:
        cfg = self.config
        return [Stage(name="spatial", steps=self.spatial_steps(), train=("spatial",), pool="frame", flip=cfg.flip),
                Stage(name="temporal", train=("temporal",), pool="video", frame_stride=cfg.sparse_stride)]

    def passes(self, step: int, stage: Stage, generator: torch.Generator) -> list[Pass]:
        if stage.name == "spatial":
            return [Pass(pool="frame", train=("spatial",), scales={"temporal": 0.0}, name="spatial", flip=self.config.flip)]
        return [Pass(pool="video", train=("temporal",), scales={"spatial": 1.0}, name="temporal")]

    def forward_context(self, call: "DenoiserCall"):
        import contextlib

        cfg = self.config
        if (call.phase != "train" or call.pass_name != "temporal" or not cfg.adaptive_rope or cfg.sparse_stride == 1
                or not self._positions_ok or self._full_frames is None or self.spec is None):
            return contextlib.nullcontext()
        sampled = self.spec.temporal_tokens(call.latent_shape[2])
        if sampled >= self._full_frames:
            return contextlib.nullcontext()
        from motiontune.hooks.positions import temporal_positions

        return temporal_positions(self.spec, sparse_positions(self._full_frames, sampled))

    def losses(self, ctx: LossContext) -> dict[str, torch.Tensor]:
        out = {"diffusion": diffusion_loss(ctx.prediction, ctx.target, ctx.weight)}
        cfg = self.config
        if ctx.pass_name == "temporal" and cfg.motion_loss != "none" and cfg.motion_weight > 0 and ctx.prediction.shape[2] >= 2:
            out["motion"] = cfg.motion_weight * motion_loss(ctx.prediction, ctx.target, cfg.motion_loss)
        return out

    # ------------------------------------------------------------------ inference
    def shipped_adapters(self) -> list[str]:
        return [n for n in ("temporal",) if n in self._require().names]

    def adapter_scales(self, t: float) -> dict[str, float]:
        s = self.adapter_scale(t) * self.config.lora_weight
        return {n: (s if n == "temporal" else 0.0) for n in self._require().names}

    # ------------------------------------------------------------------ files
    def save(self, folder: str, metadata: dict[str, Any] | None = None) -> None:
        a = self._require()
        written = a.save(folder, self.shipped_adapters())
        layout: dict[str, Any] = {"head_split": self.config.head_split if not separate_attention(self.spec) else "layers",
                                  "head_types": None, "source": self._head_source}
        if self.head_types is not None and self.config.head_split != "none" and not separate_attention(self.spec):
            self.head_types.save(os.path.join(folder, HEAD_TYPES_FILE))
            layout["head_types"] = HEAD_TYPES_FILE
            layout["temporal_heads"] = self.head_types.count("temporal")
            layout["spatial_heads"] = self.head_types.count("spatial")
        write_recipe_json(folder, self, {**(metadata or {}), "adapters": written, "follow_your_motion": layout})

    def prepare_load(self, info: dict[str, Any], folder: str) -> None:
        super().prepare_load(info, folder)
        layout = info.get("follow_your_motion")
        if not isinstance(layout, dict):
            raise ConfigError(f"{folder}: motiontune.json lacks the follow_your_motion layout (not a {self.name} adapter folder)")
        if layout.get("head_types"):
            self.head_types = HeadTypes.load(os.path.join(folder, str(layout["head_types"])))
            self._head_source = os.path.join(folder, str(layout["head_types"]))
        elif layout.get("head_split") not in ("none", "layers"):
            raise ConfigError(f"{folder}: the adapter folder lacks its {HEAD_TYPES_FILE}")

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.head_types is not None:
            out["head_types"] = {"temporal": self.head_types.count("temporal"), "spatial": self.head_types.count("spatial"),
                                 "source": self._head_source}
        return out


__all__ = ["BRANCHES", "FollowYourMotionConfig", "FollowYourMotionRecipe", "sparse_positions"]
