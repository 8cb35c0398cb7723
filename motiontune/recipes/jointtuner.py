"""``jointtuner``: appearance and motion learned jointly in one set of gated adapters (JointTuner;
METHODS.md section 2 and "What the public code does").

* **Gated LoRA** (:mod:`motiontune.adapters.gated_lora`), one adapter named ``glora`` (one
  branch, one optimizer), on the ``nn.Linear`` layers of every transformer block
  (:meth:`BackboneSpec.block_sites`): the projections of each attention inside the block
  (self-attention, and cross-attention unless ``cross_attention=False``) and the feed-forward
  linears. On the DiTs (Wan, CogVideoX, HunyuanVideo, the toy model) these are the joint blocks;
  on UNet3D and Latte the spatial and temporal transformer blocks. (The authors' ZeroScope code
  also adapts each transformer's proj_in/proj_out, which lie outside the blocks; not done here.)
  ``gate``: "mean" (default, the authors' code: one gate per layer and call, averaged over the
  batch and the tokens), "token" (one gate per token) or "none" (plain LoRA on the same layers,
  an ablation). ``scale_mode``: "raw" (default: the output is multiplied by ``alpha`` itself, as
  in the authors' code, whose CogVideoX script uses rank 128 with alpha 1) or "alpha_over_r"
  (``alpha / rank``, peft's convention). A and the gate vector are initialised N(0, std 1/rank)
  (the authors' ``normal_(std=1/r)``), B = 0, so the model starts as the base model exactly.
* **Joint training, in alternation**: even steps are image steps (pool ``image``: the reference
  images given with ``--image``, or single random frames of the clips when there are none;
  horizontal flip with probability ``flip`` = 0.5; plain diffusion loss), odd steps video steps
  (pool ``video``, the AiT loss). Alternation by step parity (``alternation="parity"``, default)
  keeps the two kinds balanced 1:1 whatever the number of images and clips, in every window of
  two steps, and makes the kind a function of the step alone (the same on every process, exact on
  resume); ``alternation="draw"`` picks an image step with probability ``image_share`` (0.5) from
  the step's seeded generator instead, like the authors' CogVideoX loader, which shuffles images
  and clips together.
* **AiT loss** on video steps: ``ait_weight * MSE(prediction + xi, target)`` with ``xi ~ N(0, 1)``
  of shape (B, 1, 1, H, W), shared across channels and frames (:func:`motiontune.losses.ait_loss`);
  it replaces the plain loss on those steps, as in the authors' code (ZeroScope: x10, the default).
  ``ait=False`` trains video steps with the plain loss (an ablation). The optional input-side
  shift noise (``shift_noise=True``, off by default as in the code; strength
  ``shift_noise_strength`` = 0.1) adds a shift of shape (B, C, F, 1, 1) to the diffusion noise of
  every training pass, before it makes the noisy input and the target, as the authors'
  ``sample_noise`` does (:meth:`Recipe.training_noise`, :func:`motiontune.losses.shift_noise`).

Settings (``--set KEY=VALUE``; ``--rank``, ``--alpha``, ``--lr`` also work):

* defaults (no preset): rank 32, alpha 1 ("raw": s = 1), LoRA dropout 0.1, lr 2e-4 (constant),
  weight decay 1e-4, 1000 steps when ``--steps`` is not given;
* ``preset=cogvideox`` (the authors' CogVideoX script): rank 128, alpha 1, lr 2e-4 (the script's
  own comment suggests 2e-5 for the 2B model and 1e-4 for the 5B), weight decay 1e-4, 1000 steps;
* ``preset=zeroscope`` (the authors' ZeroScope config): rank 32, alpha 1, lr 5e-4, weight decay
  1e-4, 2000 steps.

A setting given explicitly wins over the preset. On the toy model, the learning rate comes from
its folder (``default_learning_rate``) unless one is given. At inference the gated adapter is
applied whole (the recipe's timestep schedule, by default always). Its file cannot be loaded by
diffusers' ``load_lora_weights`` (the gate depends on the layer's input); ``motiontune generate``
and the Python API load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from motiontune.adapters.gated_lora import check_gate, check_scale_mode
from motiontune.checks import number
from motiontune.errors import ConfigError
from motiontune.losses import ait_loss, diffusion_loss, shift_noise
from motiontune.recipes.base import LossContext, RecipeConfig
from motiontune.recipes.multi import AdapterDecl, NamedLoraRecipe
from motiontune.training.plan import Pass, Stage

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

ADAPTER = "glora"
ALTERNATIONS = ("parity", "draw")
#: settings a preset fills in where they are not given (steps: the run's steps when --steps is not given)
PRESETS: dict[str, dict[str, Any]] = {
    "cogvideox": {"rank": 128, "alpha": 1.0, "learning_rate": 2e-4, "weight_decay": 1e-4, "steps": 1000},
    "zeroscope": {"rank": 32, "alpha": 1.0, "learning_rate": 5e-4, "weight_decay": 1e-4, "steps": 2000},
}
DEFAULTS: dict[str, Any] = {"rank": 32, "alpha": 1.0, "learning_rate": 2e-4, "weight_decay": 1e-4, "steps": 1000}


@dataclass
class JointTunerConfig(RecipeConfig):
    #: None, "cogvideox" or "zeroscope" (the authors' settings; see the module docstring)
    preset: str | None = None
    #: None: from the preset, else the defaults
    rank: int | None = None
    alpha: float | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    dropout: float = 0.1
    #: "mean" (one gate per layer and call, the authors' code), "token" or "none"
    gate: str = "mean"
    #: "raw" (s = alpha, the authors' code) or "alpha_over_r" (s = alpha / rank)
    scale_mode: str = "raw"
    #: adapt the cross-attention of blocks that have one too
    cross_attention: bool = True
    #: "parity" (even steps images, odd steps video) or "draw" (image with probability image_share)
    alternation: str = "parity"
    image_share: float = 0.5
    #: horizontal flip probability of the image steps' images
    flip: float = 0.5
    #: the AiT loss on video steps (False: the plain loss) and its weight
    ait: bool = True
    ait_weight: float = 10.0
    #: input-side shift noise (B, C, F, 1, 1) added to the diffusion noise of every pass
    shift_noise: bool = False
    shift_noise_strength: float = 0.1

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)} (or none)")
        base = PRESETS[self.preset] if self.preset else DEFAULTS
        for key in ("rank", "alpha", "learning_rate", "weight_decay"):
            if getattr(self, key) is None:
                setattr(self, key, base[key])
        super().__post_init__()
        self.gate = check_gate(self.gate)
        self.scale_mode = check_scale_mode(self.scale_mode)
        if self.alternation not in ALTERNATIONS:
            raise ConfigError(f"unknown alternation {self.alternation!r}; choose from {', '.join(ALTERNATIONS)}")
        for name in ("cross_attention", "ait", "shift_noise"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false (got {getattr(self, name)!r})")
        self.image_share = number("image_share", self.image_share, 0, 1)
        self.flip = number("flip", self.flip, 0, 1)
        self.ait_weight = number("ait_weight", self.ait_weight, 0, low_open=True)
        self.shift_noise_strength = number("shift_noise_strength", self.shift_noise_strength, 0)

    @property
    def steps(self) -> int:
        """Optimizer steps when the run gives none."""
        return int((PRESETS[self.preset] if self.preset else DEFAULTS)["steps"])


def glora_targets(spec: "BackboneSpec", cross_attention: bool = True) -> list[str]:
    """The ``nn.Linear`` layers of every transformer block: each attention's projections inside the
    block (cross-attention with ``cross_attention``) and the feed-forward linears."""
    blocks = spec.block_sites()
    sites = spec.attention_sites()
    modules = dict(spec.denoiser.named_modules())
    names: list[str] = []
    for block in blocks:
        for site in sites:
            if site.path == block.attention or site.path.startswith(block.path + "."):
                if site.kind == "cross" and not cross_attention:
                    continue
                names.extend(site.module_names())
        names.extend(block.ff_linears)
    from motiontune.adapters.gated_lora import GatedLoraLinear

    out = [n for n in dict.fromkeys(names) if type(modules.get(n)) is nn.Linear or isinstance(modules.get(n), GatedLoraLinear)]
    if not out:
        raise ConfigError(f"{spec.family}: no attention or feed-forward linears found in its transformer blocks")
    return out


class JointTunerRecipe(NamedLoraRecipe):
    name = "jointtuner"
    summary = "gated LoRA on every transformer block, trained jointly on reference images (plain loss) and clips (AiT loss)"
    config_cls = JointTunerConfig
    inference_adapters = (ADAPTER,)
    default_steps = DEFAULTS["steps"]

    def __init__(self, config=None, **overrides: Any):
        super().__init__(config, **overrides)
        self.default_steps = self.config.steps  # the preset's

    def adapter_plan(self, spec: "BackboneSpec") -> dict[str, AdapterDecl]:
        cfg = self.config
        return {ADAPTER: AdapterDecl((), (), cfg.rank, float(cfg.alpha), cfg.dropout, kind="gated",
                                     modules=tuple(glora_targets(spec, cfg.cross_attention)), gate=cfg.gate,
                                     scale_mode=cfg.scale_mode)}

    def stages(self) -> list[Stage]:
        return [Stage(name="joint")]

    def is_image_step(self, step: int, generator: torch.Generator) -> bool:
        """Whether ``step`` trains on images (else on clips); see the module docstring."""
        if self.config.alternation == "parity":
            return step % 2 == 0
        return float(torch.rand((), generator=generator)) < self.config.image_share

    def passes(self, step: int, stage: Stage, generator: torch.Generator) -> list[Pass]:
        if self.is_image_step(step, generator):
            return [Pass(pool="image", name="image", flip=self.config.flip)]
        return [Pass(pool="video", name="video")]

    def training_noise(self, noise: torch.Tensor, kind: str, pass_name: str, generator: torch.Generator) -> torch.Tensor:
        if not self.config.shift_noise:
            return noise
        return shift_noise(noise, generator, self.config.shift_noise_strength)

    def losses(self, ctx: LossContext) -> dict[str, torch.Tensor]:
        # by the pool actually drawn: with reference images only, the trainer turns video passes into image ones
        if ctx.pool == "video" and self.config.ait:
            return {"ait": ait_loss(ctx.prediction, ctx.target, ctx.extras["generator"], self.config.ait_weight, ctx.weight)}
        return {"diffusion": diffusion_loss(ctx.prediction, ctx.target, ctx.weight)}

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.spec is not None and self.adapters is not None:
            out["layers"] = len(self.adapters.configs[ADAPTER].target_modules)
        out["scale"] = {"mode": self.config.scale_mode,
                        "s": float(self.config.alpha) if self.config.scale_mode == "raw" else float(self.config.alpha) / self.config.rank}
        return out


__all__ = ["ADAPTER", "PRESETS", "JointTunerConfig", "JointTunerRecipe", "glora_targets"]
