"""``dualreal``: identity and motion learned jointly in two sets of block adapters, weighted per
group of blocks and per timestep by the StageBlender controller (DualReal; METHODS.md section 3
and "What the public code does").

* **Adapters** (:mod:`motiontune.adapters.block_adapter`): in every transformer block, an
  ``identity`` and a ``motion`` bottleneck adapter, ``Linear(d, 64) -> GELU -> Linear(64, d)``, on
  the self-attention's output and on the feed-forward's output, reading the block's normed tokens
  (text and video where the attention is joint: CogVideoX, HunyuanVideo). The up projection is
  zero-initialised, so by default the model starts as the base model exactly; ``residual=True`` is
  the authors' code's variant (``x + up(gelu(down(x)))`` inside the adapter, which is *not* a no-op
  at initialisation: each branch adds ``w * x``). Each update is added to the sub-module's output
  before the block's gate, as in the code. Backbones: CogVideoX, Wan and the toy model (its
  blocks), HunyuanVideo (dual-stream blocks: the feed-forward adapter also acts on the text
  stream's ``ff_context``; single-stream blocks: on the attention's output before ``proj_out`` and
  on ``proj_out``'s output, reading the block's normed ``[video; text]`` tokens), Latte (each
  spatial and each temporal block). UNet3D, not a DiT, is supported the same way, an extension of
  ours: the pair goes in each of its spatial and temporal transformer blocks, each adapter of its
  block's width, and the controller reads the first block's (``transformer_in``'s) tokens.
* **StageBlender controller** (:mod:`motiontune.adapters.stage_blender`, branch ``controller``):
  the max-pooled tokens entering the first block and the timestep embedding, adaLN-style fusion,
  an MLP and a zero-initialised head give ``alpha = 0.2 * sigmoid(...)`` per sample and per group
  of consecutive blocks. Following the paper (section 3.2: "the motion adapter outputs are scaled
  by weight coefficient alpha_i, with identity outputs weighted by the complementary
  coefficient"), the **motion** adapter takes ``alpha`` and the **identity** adapter ``0.2 - alpha``
  (``alpha_branch="motion"``). The authors' code does the reverse: its ``dynamic_alpha_beta[0]``,
  the controller's output, scales the identity adapter and ``0.2 - alpha`` the motion adapter
  (``alpha_branch="identity"``). The two are the same family of functions (``sigmoid(-x) = 1 -
  sigmoid(x)``: a head with flipped sign), so the choice only changes which weight the controller's
  output reads as. Groups: ``blocks_per_group`` consecutive blocks each (default 6, so CogVideoX-5B's
  42 blocks make the paper's 7 groups; the last group may be smaller), or ``groups`` groups of
  near-equal size; ``groups`` larger than the number of blocks is refused. ``controller=False``
  replaces the controller by fixed weights ``fixed_weight`` (0.1, the code's default) for both
  adapters (the paper's "w/o StageBlender Controller" ablation).
* **Training**: each step draws motion data (pool ``video``: the clips) with probability
  ``motion_share`` (0.5) and identity data (pool ``image``: the reference images as one-frame
  clips, or single frames of the clips when no image is given) otherwise, from the step's seeded
  plan generator (the same on every process). A motion step trains ``motion`` and ``controller``,
  an identity step ``identity`` and ``controller``; the branch of the other kind still runs in the
  forward pass (the "frozen prior") but does not move at all on that step: it gets no gradient and
  its optimizer does not step (no momentum, no weight decay). The code's gradient mask sets the
  masked branch's gradients to None after backward; under its own DeepSpeed ZeRO-2 setting the
  optimizer has already stepped inside backward, so the mask does nothing (``alternation="nomask"``);
  a mask that zeroes the gradients instead leaves AdamW's momentum and weight decay acting on the
  masked branch (``alternation="gradmask"``; with ``None`` gradients, as in the code without
  DeepSpeed, torch's and bitsandbytes' AdamW skip the parameter, which then holds still as here).
  Plain diffusion loss. (With reference images only and no clip, the
  trainer turns the motion steps into image steps too, so both branches then learn from images.)

Settings (``--set KEY=VALUE``; ``--lr`` also works): ``hidden`` (64), ``residual`` (false),
``blocks_per_group`` (6), ``groups`` (none), ``alpha_branch`` ("motion"), ``controller`` (true),
``controller_width`` (512) and ``controller_hidden`` (128), ``weight_total`` (0.2),
``fixed_weight`` (0.1), ``motion_share`` (0.5), ``alternation`` ("optimizer"; "gradmask" and
"nomask" are the authors' code's behaviours, for ablations: see the config's comment and
``docs/methods/dualreal.md``), ``optimizer`` ("auto"), ``image_encoder`` (none), ``image_scale`` (1),
``image_branches`` ("motion"). The authors' code: learning rate 1e-3 (the default here), AdamW with
weight decay 1e-4 (the default here; the code uses bitsandbytes' 8-bit AdamW with betas (0.9, 0.95);
here 8-bit AdamW only with bitsandbytes on a GPU, and betas (0.9, 0.999) either way), 1000 steps (the default when ``--steps`` is
not given), 200 warm-up steps and a cosine schedule (trainer settings, not recipe settings: pass
``warmup_steps=200, lr_schedule="cosine"`` to :func:`motiontune.api.train`), batch 3 for motion
and 1 for identity (the trainer has one batch size), 49 frames at 480x720 in bf16; sampling with
CFG 6 and 50 steps (CogVideoX's own defaults here; on another backbone pass ``--guidance 6 --steps
50``). On the toy model the learning rate comes from its folder (``default_learning_rate``) unless
one is given. ``optimizer`` ("auto"): bitsandbytes' 8-bit AdamW, as in the code, when bitsandbytes is
installed and the model is on a GPU, else torch's AdamW.

* **Reference-image conditioning** (optional, ``image_encoder``: a CLIP image encoder by hub id or
  folder, transformers' ``CLIPVisionModelWithProjection`` with its ``CLIPImageProcessor``): before
  training, the run's reference images (or the first frame of each clip when no image is given) are
  embedded and averaged into one embedding ``e``; each adapter of ``image_branches`` (default
  ``motion``: the paper's equation 2 and the code's script) gets a learned ``Linear(c, d)`` and reads
  ``x + image_scale * Linear(e)`` (lambda, default 1, the code's). The embedding is written beside the
  adapter (``image_embedding.safetensors``), so generation needs no encoder. Without an encoder, one
  line says the conditioning is skipped; an encoder given but not found is refused before the model
  loads. The code instead embeds each training clip's frame (identity images with a derangement,
  and a dropout to a zero feature) and a single reference image at inference.

Files: ``adapter_identity.safetensors`` and ``adapter_motion.safetensors`` (block adapters, their
own key layout), ``controller.safetensors`` and, with image conditioning, ``image_embedding.safetensors``;
``motiontune.json`` records the block count, the groups and the image conditioning (its
``config.image_encoder`` is written as null, the encoder being recorded under ``dualreal.image_condition``). ``motiontune generate`` and the Python API load the folder; one trained on another
backbone family or on a model with another number of blocks (or another width) is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

import dataclasses
import logging

from motiontune.adapters.block_adapter import add_block_condition, backbone_blocks, block_width, set_condition, set_weight_source
from motiontune.adapters.image_embedding import check_image_encoder, embed_images, load_embedding, load_image_encoder, save_embedding
from motiontune.adapters.stage_blender import (
    CHILD,
    GroupWeights,
    StageBlender,
    block_groups,
    load_stage_blender,
    save_stage_blender,
    timestep_width,
)
from motiontune.checks import MAX_RANK, number
from motiontune.errors import ConfigError
from motiontune.recipes.base import RecipeConfig, write_recipe_json
from motiontune.recipes.multi import AdapterDecl, NamedLoraRecipe
from motiontune.training.plan import Pass, Stage

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec

BRANCHES = ("identity", "motion")
CONTROLLER = "controller"
CONTROLLER_FILE = "controller.safetensors"
IMAGE_FILE = "image_embedding.safetensors"
log = logging.getLogger("motiontune")
#: how the branch of the other kind is held on a step (see DualRealConfig.alternation)
ALTERNATIONS = ("optimizer", "gradmask", "nomask")
#: the authors' code's settings (METHODS.md): lr 1e-3, AdamW weight decay 1e-4, 1000 steps
DEFAULT_STEPS = 1000


@dataclass
class DualRealConfig(RecipeConfig):
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    #: width of each bottleneck adapter
    hidden: int = 64
    #: the authors' code's adapter, x + up(gelu(down(x))) (not a no-op at initialisation)
    residual: bool = False
    #: consecutive blocks per controller group (the paper: 6, i.e. 7 groups on CogVideoX-5B)
    blocks_per_group: int = 6
    #: number of groups instead (None: from blocks_per_group)
    groups: int | None = None
    #: which adapter takes the controller's alpha: "motion" (the paper) or "identity" (the authors' code)
    alpha_branch: str = "motion"
    #: the StageBlender controller (False: fixed weights, fixed_weight for both adapters)
    controller: bool = True
    controller_width: int = 512
    controller_hidden: int = 128
    #: the two weights of a group add up to this
    weight_total: float = 0.2
    fixed_weight: float = 0.1
    #: probability that a step is a motion step
    motion_share: float = 0.5
    #: how the branch of the other kind is held on a step: "optimizer" (its optimizer does not step and it
    #: gets no gradient: it does not move at all), "gradmask" (the code's gradient mask done by zeroing:
    #: it gets its gradient, which is zeroed after backward, and its AdamW still steps, so momentum and
    #: weight decay move it), "nomask" (both branches train on every step: what the code does under its
    #: DeepSpeed ZeRO-2 setting, where the optimizer steps inside backward, before the mask)
    alternation: str = "optimizer"
    #: "auto": bitsandbytes' 8-bit AdamW (the authors' code) when bitsandbytes is installed and the model is on
    #: a GPU, else torch's AdamW; "adamw"; "adamw8bit" (refused without bitsandbytes or a GPU)
    optimizer: str = "auto"
    #: reference-image conditioning: a CLIP image encoder (hub id or folder; None: no conditioning)
    image_encoder: str | None = None
    #: lambda: the scale of the projected image embedding added to the conditioned adapters' input
    image_scale: float = 1.0
    #: the adapters that read the image embedding: "motion" (the paper's equation 2 and the code's script),
    #: "identity", or "identity,motion"
    image_branches: Any = ("motion",)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.hidden = number("hidden", self.hidden, 1, MAX_RANK, integer=True)
        self.blocks_per_group = number("blocks_per_group", self.blocks_per_group, 1, 100_000, integer=True)
        self.groups = number("groups", self.groups, 1, 100_000, integer=True, optional=True)
        self.controller_width = number("controller_width", self.controller_width, 1, 65_536, integer=True)
        self.controller_hidden = number("controller_hidden", self.controller_hidden, 1, 65_536, integer=True)
        self.weight_total = number("weight_total", self.weight_total, 0, 10, low_open=True)
        self.fixed_weight = number("fixed_weight", self.fixed_weight, 0, 10)
        self.motion_share = number("motion_share", self.motion_share, 0, 1)
        self.image_scale = number("image_scale", self.image_scale, -100, 100)
        raw = self.image_branches
        items = raw.split(",") if isinstance(raw, str) else list(raw) if isinstance(raw, (list, tuple)) else [None]
        names = [b.strip() if isinstance(b, str) else b for b in items]
        if not names or any(b not in BRANCHES for b in names):
            raise ConfigError(f"image_branches must name motion, identity or both, comma-separated (got {raw!r})")
        self.image_branches = tuple(b for b in BRANCHES if b in names)
        if self.image_encoder is not None:
            check_image_encoder(self.image_encoder)  # before any model loads
        if self.optimizer not in ("auto", "adamw", "adamw8bit"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose from auto, adamw, adamw8bit")
        if self.optimizer == "adamw8bit" and not has_bitsandbytes():
            raise ConfigError("optimizer=adamw8bit needs bitsandbytes (pip install bitsandbytes) and a GPU; "
                              "optimizer=auto uses it only where it is there")
        if self.alternation not in ALTERNATIONS:
            raise ConfigError(f"unknown alternation {self.alternation!r}; choose from {', '.join(ALTERNATIONS)}")
        if self.alpha_branch not in BRANCHES:
            raise ConfigError(f"unknown alpha_branch {self.alpha_branch!r}; choose from motion (the paper), identity (the authors' code)")
        for name in ("residual", "controller"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false (got {getattr(self, name)!r})")


class DualRealRecipe(NamedLoraRecipe):
    name = "dualreal"
    summary = ("identity and motion adapters in every block, weighted per block group and timestep by the StageBlender "
               "controller; identity steps on reference images, motion steps on clips, the other branch frozen")
    config_cls = DualRealConfig
    inference_adapters = BRANCHES
    default_steps = DEFAULT_STEPS
    #: the controller only weights the adapters: it changes nothing while they are zero
    branch_prerequisites = {CONTROLLER: BRANCHES}

    def __init__(self, config=None, **overrides: Any):
        super().__init__(config, **overrides)
        self.controller: StageBlender | None = None
        self.blend: GroupWeights | None = None
        self.group_of_block: list[int] = []
        #: the layout recorded in a folder being loaded (prepare_load)
        self._saved: dict[str, Any] | None = None
        self._folder = ""
        #: the reference-image embedding (1, c) the conditioned adapters read (None: no conditioning)
        self.image_embedding: torch.Tensor | None = None
        self._image_count = 0

    # ------------------------------------------------------------------ layout
    def adapter_plan(self, spec: "BackboneSpec") -> dict[str, AdapterDecl]:
        cfg = self.config
        return {n: AdapterDecl((), (), cfg.hidden, 1.0, 0.0, kind="block", residual=cfg.residual) for n in BRANCHES}

    def layout(self, spec: "BackboneSpec") -> list[int]:
        """The group of each block of ``spec`` (refusing ``groups`` above the block count)."""
        blocks = backbone_blocks(spec, "the dualreal recipe's adapters")
        cfg = self.config
        return block_groups(len(blocks), cfg.blocks_per_group, cfg.groups, where=f" of this {spec.family} model")

    def apply(self, spec: "BackboneSpec") -> None:
        if self.spec is spec:
            return
        groups = self.layout(spec)  # everything is checked before the model is changed
        sites = spec.block_sites()
        if self._saved is not None:
            self._check_saved(spec, len(sites), groups)
        super().apply(spec)
        cfg = self.config
        self.group_of_block = groups
        other = BRANCHES[1] if cfg.alpha_branch == BRANCHES[0] else BRANCHES[0]
        if cfg.controller:
            ref = next(spec.denoiser.parameters())
            dtype = torch.float32 if ref.dtype in (torch.float16, torch.bfloat16) else ref.dtype
            self.controller = StageBlender(block_width(spec, sites[0]), timestep_width(spec), max(groups) + 1,
                                           cfg.controller_width, cfg.controller_hidden, cfg.weight_total).to(ref.device, dtype)
            spec.denoiser.add_module(CHILD, self.controller)
        self.blend = GroupWeights(spec, groups, cfg.alpha_branch, other, self.controller, cfg.weight_total,
                                  (cfg.fixed_weight, cfg.fixed_weight))
        self.blend.install()
        set_weight_source(spec.denoiser, self.blend.weight)
        dim = self._condition_dim()
        if dim:
            saved = (self._saved or {}).get("image_condition") or {}
            for b in saved.get("branches", cfg.image_branches):
                add_block_condition(spec.denoiser, b, dim)
                self.adapters.configs[b] = dataclasses.replace(self.adapters.configs[b], condition_dim=dim)
            self._set_condition()

    # ------------------------------------------------------------------ reference-image conditioning
    def prepare_training(self, spec: "BackboneSpec", data: Any, config: Any = None) -> None:
        """Embed the reference images with the image encoder (or say in one line that there is none)."""
        cfg = self.config
        if cfg.image_encoder is None:
            log.info("dualreal: no image encoder given (--set image_encoder=HUB_ID_OR_FOLDER of a CLIP image encoder): "
                     "the adapters are not conditioned on the reference images")
            return
        images = reference_images(data)
        model, processor = load_image_encoder(cfg.image_encoder, spec.device)
        embeddings = embed_images(model, processor, images)
        del model
        self.image_embedding = embeddings.mean(0, keepdim=True)
        self._image_count = len(images)
        log.info("dualreal: the %s adapter(s) read the mean CLIP embedding of %d reference image(s) (%s, width %d, lambda %g)",
                 "/".join(cfg.image_branches), len(images), cfg.image_encoder, self.image_embedding.shape[-1], cfg.image_scale)

    def _condition_dim(self) -> int:
        saved = (self._saved or {}).get("image_condition")
        if isinstance(saved, dict):
            return int(saved["dim"])
        if self.image_embedding is not None:
            return int(self.image_embedding.shape[-1])
        if self.config.image_encoder is not None:
            raise ConfigError(f"image_encoder={self.config.image_encoder!r}: the image conditioning is made from the run's "
                              f"reference images; train through motiontune train or the Trainer, which embed them first")
        return 0

    def _set_condition(self) -> None:
        e = self.image_embedding
        if self.spec is not None:
            set_condition(self.spec.denoiser, None if e is None else e.to(self.spec.device), self.config.image_scale)

    def _check_saved(self, spec: "BackboneSpec", blocks: int, groups: list[int]) -> None:
        saved, where = self._saved or {}, self._folder
        given = f"{getattr(spec, 'name', spec.source)} ({spec.family})"
        if saved.get("blocks") != blocks:
            raise ConfigError(f"{where}: the dualreal adapter was trained on a model with {saved.get('blocks')} transformer blocks; "
                              f"{given} has {blocks}")
        cond = saved.get("image_condition")
        if cond is not None and (not isinstance(cond, dict) or not isinstance(cond.get("dim"), int) or cond["dim"] < 1
                                 or not isinstance(cond.get("branches", []), list) or not set(cond.get("branches", [])) <= set(BRANCHES)):
            raise ConfigError(f"{where}: motiontune.json's dualreal image_condition is not valid (expected the embedding width "
                              f"'dim' and the conditioned branches)")
        if saved.get("groups") is not None and saved["groups"] != max(groups) + 1:
            raise ConfigError(f"{where}: the dualreal controller was trained with {saved['groups']} block groups; "
                              f"its settings give {max(groups) + 1} on {given}")

    @property
    def n_groups(self) -> int:
        return max(self.group_of_block) + 1 if self.group_of_block else 0

    # ------------------------------------------------------------------ branches
    def branches(self) -> dict[str, dict[str, torch.nn.Parameter]]:
        out = super().branches()
        if self.controller is not None:
            out[CONTROLLER] = {f"{CHILD}.{k}": p for k, p in self.controller.named_parameters()}
        return out

    def stages(self) -> list[Stage]:
        return [Stage(name="joint", optimizer=self.optimizer_kind())]

    def optimizer_kind(self) -> str:
        """The optimizer of every branch: ``adamw8bit`` for ``optimizer=auto`` when bitsandbytes is installed
        and the model is on a GPU (the authors' code's 8-bit AdamW), else ``adamw``."""
        cfg = self.config
        on_gpu = self.spec is not None and self.spec.device.type == "cuda"
        if cfg.optimizer == "adamw8bit":
            if self.spec is not None and not on_gpu:
                raise ConfigError(f"optimizer=adamw8bit needs the model on a GPU (it is on {self.spec.device.type}); "
                                  f"use optimizer=auto or adamw")
            return "adamw8bit"
        if cfg.optimizer == "auto" and on_gpu and has_bitsandbytes():
            return "adamw8bit"
        return "adamw"

    def is_motion_step(self, generator: torch.Generator) -> bool:
        return float(torch.rand((), generator=generator)) < self.config.motion_share

    def passes(self, step: int, stage: Stage, generator: torch.Generator) -> list[Pass]:
        extra = (CONTROLLER,) if self.config.controller else ()
        kind, pool = ("motion", "video") if self.is_motion_step(generator) else ("identity", "image")
        train = (kind, *extra) if self.config.alternation == "optimizer" else (*BRANCHES, *extra)
        return [Pass(pool=pool, train=train, name=kind)]

    @staticmethod
    def frozen_branch(pool: str) -> str:
        """The branch a step on ``pool`` does not train (the motion branch on image steps)."""
        return "motion" if pool == "image" else "identity"

    def after_backward(self, step: int, kind: str) -> None:
        """``alternation="gradmask"``: zero the gradients of the branch of the other kind (the code's mask;
        its optimizer still steps)."""
        if self.config.alternation != "gradmask":
            return
        for p in self._require().parameters(self.frozen_branch(kind)).values():
            if p.grad is not None:
                p.grad.zero_()

    # ------------------------------------------------------------------ controller
    def last_weights(self) -> dict[str, torch.Tensor]:
        """The weight of each adapter per sample and group in the last denoiser call, ``{name: (B,
        groups)}`` (for inspection, plots and tests)."""
        if self.blend is None:
            raise ConfigError(f"the {self.name} recipe is not applied to a backbone yet")
        if self.controller is None:
            return {n: torch.full((1, self.n_groups), self.config.fixed_weight) for n in BRANCHES}
        alpha = self.blend.alpha
        if alpha is None:
            raise ConfigError("no denoiser call has run since the last timestep embedding")
        alpha = alpha.detach()
        return {self.blend.alpha_branch: alpha, self.blend.other_branch: self.blend.total - alpha}

    # ------------------------------------------------------------------ files
    def save(self, folder: str, metadata: dict[str, Any] | None = None) -> None:
        a = self._require()
        written = a.save(folder, self.shipped_adapters())
        layout: dict[str, Any] = {"blocks": len(self.group_of_block), "groups": self.n_groups, "group_of_block": self.group_of_block,
                                  "alpha_branch": self.config.alpha_branch}
        if self.controller is not None:
            save_stage_blender(self.controller, os.path.join(folder, CONTROLLER_FILE))
            layout["controller"] = {"file": CONTROLLER_FILE, **self.controller.settings()}
        config = self.config.to_dict()
        if self.image_embedding is not None:
            cfg = self.config
            save_embedding(self.image_embedding, os.path.join(folder, IMAGE_FILE),
                           {"encoder": str(cfg.image_encoder), "images": str(self._image_count)})
            layout["image_condition"] = {"file": IMAGE_FILE, "encoder": cfg.image_encoder, "dim": int(self.image_embedding.shape[-1]),
                                         "images": self._image_count, "branches": list(cfg.image_branches), "scale": cfg.image_scale}
            # generation reads the saved embedding: loading the folder needs no encoder
            config["image_encoder"] = None
        write_recipe_json(folder, self, {**(metadata or {}), "adapters": written, "dualreal": layout, "config": config})

    def prepare_load(self, info: dict[str, Any], folder: str) -> None:
        super().prepare_load(info, folder)
        saved = info.get("dualreal")
        if not isinstance(saved, dict):
            raise ConfigError(f"{folder}: motiontune.json lacks the dualreal block layout (not a dualreal adapter folder)")
        if self.config.controller and not isinstance(saved.get("controller"), dict):
            raise ConfigError(f"{folder}: the adapter folder lacks the 'controller' branch the {self.name} recipe needs")
        self._saved, self._folder = saved, folder

    def load_weights(self, folder: str) -> None:
        super().load_weights(folder)
        if self.controller is not None:
            load_stage_blender(self.controller, os.path.join(folder, CONTROLLER_FILE))
        cond = (self._saved or {}).get("image_condition")
        if isinstance(cond, dict):
            self.image_embedding = load_embedding(os.path.join(folder, IMAGE_FILE), int(cond["dim"]))
            self._image_count = int(cond.get("images", 0) or 0)
            self._set_condition()

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        if self.spec is not None:
            out["blocks"] = len(self.group_of_block)
            out["groups"] = self.n_groups
            out["alpha_branch"] = self.config.alpha_branch
        return out


def has_bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def reference_images(data: Any) -> list[torch.Tensor]:
    """The run's reference images as (3, H, W) pixels: the images, else the first frame of each clip."""
    images = [s.pixels for s in getattr(data, "images", []) if s.pixels is not None]
    if not images:
        images = [s.pixels[:, 0] for s in getattr(data, "videos", []) if s.pixels is not None]
    if not images:
        raise ConfigError(f"image_encoder: the image conditioning needs reference images or clips as pixels; "
                          f"this training data ({type(data).__name__}) gives none")
    return images


__all__ = ["ALTERNATIONS", "BRANCHES", "CONTROLLER", "DualRealConfig", "DualRealRecipe"]
