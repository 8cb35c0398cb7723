"""The trainer shared by every recipe (built on accelerate).

A recipe's training is laid out as stages and passes (:mod:`motiontune.training.plan`): each
branch of trainable parameters has its own optimizer, and a step steps only the optimizers of
the branches it trained, so a branch that runs in the forward pass without being trained is
left exactly as it was (no momentum, no weight decay), also with gradient accumulation and
across processes.

Each step draws everything random (which sample, timesteps, noise, dropout) from generators
seeded by ``(seed, step, rank)``, so a run interrupted and resumed from a checkpoint ends with
exactly the adapter weights and optimizer state of an uninterrupted run. In data-parallel runs
(``accelerate launch``) every rank draws different samples and noise; gradients of the
trainable parameters are averaged across ranks before each optimizer step, so all ranks keep
identical weights.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from motiontune.checks import MAX_BATCH, MAX_LEARNING_RATE, MAX_SAMPLING_STEPS, MAX_SEED, MAX_STEPS, number
from motiontune.data.dataset import LatentCache, Sample, TrainingData, content_key
from motiontune.errors import ConfigError, TrainingDiverged
from motiontune.hooks.call import DenoiserCall, denoiser_call
from motiontune.recipes.base import LossContext
from motiontune.training.checkpoint import (
    check_finite,
    clean_leftovers,
    holds_run,
    latest_checkpoint,
    load_checkpoint,
    optimizers_from_tensors,
    save_checkpoint,
    staging_paths,
    swap_in,
)
from motiontune.training.plan import BUILTIN_POOLS, Pass, StageSpan, check_pass, layout_stages, stage_at, stage_summary
from motiontune.utils.progress import progress

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec
    from motiontune.recipes.base import Recipe

log = logging.getLogger("motiontune")

#: TrainConfig settings that change the weights a run ends with, part of its fingerprint (progress,
#: logging, checkpoint cadence, stop_at, paths, compile and gradient checkpointing do not change them)
RESULT_SETTINGS = ("learning_rate", "batch_size", "gradient_accumulation_steps", "mixed_precision", "seed",
                   "timestep_distribution", "logit_mean", "logit_std", "train_shift", "timestep_phases",
                   "warmup_steps", "lr_schedule", "min_lr_ratio", "max_grad_norm")


@dataclass
class TrainConfig:
    output_dir: str = "outputs/run"
    steps: int = 300
    #: overrides the recipe's learning rate when set
    learning_rate: float | None = None
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    #: torch.compile the denoiser (in place: weights and checkpoints keep their names), one graph per
    #: input shape. On CPU it needs a C++ compiler; the first steps of each shape pay for compilation
    compile: bool = False
    #: "no" (fp32), "bf16" or "fp16" (GPU)
    mixed_precision: str = "no"
    seed: int = 0
    timestep_distribution: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    #: flow-matching only: shift applied to training noise levels
    train_shift: float = 1.0
    #: later phases of the timestep sampling, each ``{"from_step": N, "distribution": ..., "shift": ...}``
    #: (``logit_mean``/``logit_std`` optional): from step N on, those settings replace the ones above
    timestep_phases: list[dict] = field(default_factory=list)
    warmup_steps: int = 0
    #: learning rate after warm-up: "constant", or "cosine" (half a cosine down to min_lr_ratio x the rate at the last step)
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    checkpoint_every: int = 100
    #: stop this run after this step (checkpointed, resumable; the schedules stay those of ``steps``);
    #: None runs to ``steps``
    stop_at: int | None = None
    keep_checkpoints: int = 2
    resume: bool = True
    log_every: int = 10
    tensorboard: bool = False
    validation_every: int = 0
    validation_prompts: list[str] = field(default_factory=list)
    validation_steps: int = 20
    #: folder of the latent / prompt-embedding cache (None: in memory only)
    cache_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.steps = number("steps", self.steps, 1, MAX_STEPS, integer=True)
        self.stop_at = number("stop_at", self.stop_at, 1, self.steps, integer=True, optional=True)
        self.learning_rate = number("learning_rate (--lr)", self.learning_rate, 0, MAX_LEARNING_RATE, low_open=True, optional=True)
        self.batch_size = number("batch_size", self.batch_size, 1, MAX_BATCH, integer=True)
        self.gradient_accumulation_steps = number("gradient_accumulation_steps", self.gradient_accumulation_steps, 1, MAX_BATCH, integer=True)
        self.seed = number("seed", self.seed, 0, MAX_SEED, integer=True)
        for name in ("checkpoint_every", "warmup_steps", "keep_checkpoints", "log_every", "validation_every"):
            setattr(self, name, number(name, getattr(self, name), 0, MAX_STEPS, integer=True))
        self.validation_steps = number("validation_steps", self.validation_steps, 1, MAX_SAMPLING_STEPS, integer=True)
        self.logit_mean = number("logit_mean", self.logit_mean)
        self.logit_std = number("logit_std", self.logit_std, 0, low_open=True)
        self.max_grad_norm = number("max_grad_norm", self.max_grad_norm, 0)
        self.min_lr_ratio = number("min_lr_ratio", self.min_lr_ratio, 0, 1)
        self.train_shift = number("train_shift", self.train_shift, 0, low_open=True)
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision must be no, bf16 or fp16 (got {self.mixed_precision!r})")
        if self.timestep_distribution not in ("uniform", "logit_normal"):
            raise ConfigError(f"timestep_distribution must be uniform or logit_normal (got {self.timestep_distribution!r})")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule must be constant or cosine (got {self.lr_schedule!r})")
        known = {"from_step", "distribution", "shift", "logit_mean", "logit_std"}
        previous = 0
        for phase in self.timestep_phases:
            if not isinstance(phase, dict) or "from_step" not in phase or set(phase) - known:
                raise ConfigError(f"timestep phase {phase!r}: expected a mapping with from_step and any of {sorted(known - {'from_step'})}")
            if isinstance(phase["from_step"], bool) or not isinstance(phase["from_step"], int) or phase["from_step"] <= previous:
                raise ConfigError(f"timestep phase {phase!r}: from_step must be an integer above the previous phase's ({previous})")
            if phase.get("distribution", "uniform") not in ("uniform", "logit_normal"):
                raise ConfigError(f"timestep phase {phase!r}: distribution must be uniform or logit_normal")
            shift = phase.get("shift", 1.0)
            if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not (math.isfinite(shift) and shift > 0):
                raise ConfigError(f"timestep phase {phase!r}: shift must be > 0 and finite")
            previous = phase["from_step"]

    def timestep_settings(self, step: int) -> dict[str, Any]:
        """The timestep sampling at ``step``: distribution, shift, logit mean and std (the last phase started)."""
        out = {"distribution": self.timestep_distribution, "shift": self.train_shift,
               "logit_mean": self.logit_mean, "logit_std": self.logit_std}
        for phase in self.timestep_phases:
            if step >= phase["from_step"]:
                out.update({k: v for k, v in phase.items() if k != "from_step"})
        return out


@dataclass
class TrainResult:
    output_dir: str
    steps: int
    final_loss: float
    losses: list[float]
    seconds: float
    resumed_from: int = 0
    #: the trained recipe, still applied to the backbone spec it was trained on
    recipe: "Recipe | None" = None
    #: False when the run stopped at ``TrainConfig.stop_at`` before its last step (``steps`` is then
    #: the step it stopped at; nothing final was written)
    finished: bool = True
    #: wall time of all the runs that made these steps: ``seconds`` plus the time recorded in the
    #: checkpoint this run resumed from (steps redone after an interruption count once); None when
    #: that checkpoint records no time
    total_seconds: float | None = 0.0


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729) % (2**63 - 1)


def _plan_seed(seed: int, step: int) -> int:
    """Seed of a step's pass plan: the same on every process."""
    return (seed * 2_000_029 + step * 15_485_863 + 1) % (2**63 - 1)


def make_optimizer(kind: str, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if kind == "adamw":
        return torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8)
    if kind == "adam":
        return torch.optim.Adam(groups, betas=(0.9, 0.999), eps=1e-8)
    if kind == "sgd":
        return torch.optim.SGD(groups, momentum=0.9)
    if kind == "adamw8bit":  # bitsandbytes' 8-bit AdamW (GPU), the same betas and eps
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ConfigError("optimizer adamw8bit needs bitsandbytes (pip install bitsandbytes) and a GPU") from None
        return bnb.optim.AdamW8bit(groups, betas=(0.9, 0.999), eps=1e-8)
    raise ConfigError(f"unknown optimizer {kind!r}")


class Trainer:
    def __init__(self, spec: "BackboneSpec", recipe: "Recipe", data: TrainingData, config: TrainConfig, metadata: dict[str, Any] | None = None):
        from accelerate import Accelerator

        self.spec = spec
        self.recipe = recipe
        self.data = data
        self.config = config
        # wall time recorded in the checkpoint resumed from (None: not recorded), and when this run's loop began
        self.seconds_before: float | None = 0.0
        self._began: float | None = None
        self.metadata = metadata or {}
        #: where this run writes: the output folder, or a folder beside it (see train())
        self.run_dir = config.output_dir
        self._fingerprint: dict[str, Any] | None = None
        log_with = "tensorboard" if config.tensorboard else None
        cpu = spec.device.type == "cpu"
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision if not cpu else "no",
            log_with=log_with,
            project_dir=config.output_dir,
            cpu=cpu,
        )
        if cpu and config.mixed_precision != "no":
            raise ConfigError("mixed precision (bf16/fp16) needs a GPU; use mixed_precision: no on CPU")
        torch.manual_seed(config.seed)  # adapter initialisation is part of the seeded run
        recipe.prepare_training(spec, data, config)
        recipe.apply(spec)
        if config.learning_rate is not None:
            recipe.config.learning_rate = config.learning_rate
        self.branches = {b: list(ps.values()) for b, ps in recipe.branches().items()}
        params = [p for ps in self.branches.values() for p in ps]
        if not params:
            raise ConfigError(f"recipe {recipe.name} has no trainable parameters on this backbone")
        self.pool_fns = recipe.pools()
        pools = list(dict.fromkeys([*BUILTIN_POOLS, *self.pool_fns]))
        self.spans: list[StageSpan] = layout_stages(recipe.stages(), config.steps, list(self.branches), pools)
        self._pools = pools
        if config.gradient_checkpointing and hasattr(spec.denoiser, "enable_gradient_checkpointing"):
            spec.denoiser.enable_gradient_checkpointing()
        if config.compile:
            spec.denoiser.compile(dynamic=False)
        spec.denoiser.train()
        self.params = params
        self.optimizers = self._make_optimizers()
        self.base_lrs = {k: [g["lr"] for g in o.param_groups] for k, o in self.optimizers.items()}
        self.base_wds = {k: [g.get("weight_decay", 0.0) for g in o.param_groups] for k, o in self.optimizers.items()}
        self.cache = LatentCache(spec, config.cache_dir)
        self.schedule = spec.schedule
        if hasattr(self.schedule, "shift"):
            self.schedule.shift = config.train_shift
        pool = getattr(data, "pool", None)
        #: a recipe's video batches become image batches when only reference images were given
        self._images_only = bool(pool and not pool("video") and pool("image"))
        recipe.images_with_videos = bool(pool and pool("video") and pool("image"))
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self._check_data()

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per (branch, optimizer kind its stages use); a recipe with one branch keeps
        its own parameter groups in one optimizer named ``default``."""
        if list(self.branches) == ["default"] and all(sp.stage.optimizer == "adamw" for sp in self.spans):
            return {"default": make_optimizer("adamw", self.recipe.param_groups())}
        out: dict[str, torch.optim.Optimizer] = {}
        for branch, params in self.branches.items():
            if not params:
                continue
            settings = self.recipe.branch_settings(branch)
            for sp in self.spans:
                if sp.stage.train is not None and branch not in sp.stage.train:
                    continue
                key = self._opt_key(branch, sp.stage.optimizer)
                if key not in out:
                    out[key] = make_optimizer(sp.stage.optimizer, [{"params": params, "lr": float(settings["lr"]),
                                                                    "weight_decay": float(settings.get("weight_decay", 0.0))}])
        return out

    @staticmethod
    def _opt_key(branch: str, kind: str) -> str:
        return branch if kind == "adamw" else f"{branch}:{kind}"

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of a one-branch recipe."""
        if len(self.optimizers) != 1:
            raise AttributeError(f"this run has one optimizer per branch: {', '.join(self.optimizers)}")
        return next(iter(self.optimizers.values()))

    def _check_data(self) -> None:
        """Refuse, before any step, a stage whose frame sampling leaves a clip the backbone cannot take."""
        videos = [s for s in getattr(self.data, "videos", []) if s.pixels is not None]
        for sp in self.spans:
            k = sp.stage.frame_stride
            if k == 1:
                continue
            for s in videos:
                n = s.pixels.shape[1]
                for offset in range(k):  # every offset the draw may pick
                    have = len(range(min(offset, n - 1), n, k))
                    if usable_frames(have, self.spec.frame_rule) < 2:
                        raise ConfigError(f"stage {sp.stage.name!r}: every {k}-th frame of {s.source} leaves {have} of {n} frames "
                                          f"(from frame {offset}); this backbone needs {self.spec.frame_rule.describe()}")

    # ------------------------------------------------------------------ data
    def _samples(self, kind: str, gen: torch.Generator, span: StageSpan, flip: float | None) -> list[Sample]:
        n = self.config.batch_size
        if kind in self.pool_fns:
            return self.pool_fns[kind](self.data, gen, n)
        stage = span.stage
        flip = stage.flip if flip is None else float(flip)
        if flip or stage.frame_stride > 1:
            if not isinstance(self.data, TrainingData):
                raise ConfigError(f"stage {stage.name!r}: flip and frame_stride need reference clips, not {type(self.data).__name__}")
            return self.data.draw(kind, gen, n, flip=flip, frame_stride=stage.frame_stride, frame_rule=self.spec.frame_rule)
        return self.data.draw(kind, gen, n)

    def _draw(self, kind: str, gen: torch.Generator, span: StageSpan, flip: float | None = None
              ) -> tuple[list[Sample], torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """The samples, x0, the condition and loss weights (or None)."""
        samples: list[Sample] = self._samples(kind, gen, span, flip)
        weight = None
        if any(s.loss_weight is not None for s in samples):
            shapes = {tuple(s.loss_weight.shape) for s in samples if s.loss_weight is not None}
            if len(shapes) != 1:
                raise ConfigError(f"samples of one batch have loss weights of different shapes: {sorted(shapes)}")
            ones = torch.ones(shapes.pop())
            weight = torch.stack([ones if s.loss_weight is None else s.loss_weight.float() for s in samples]).to(self.spec.device)
        if all(s.latents is not None for s in samples):
            x0 = torch.stack([s.latents.float() for s in samples])
        elif getattr(self.data, "cacheable", False):
            x0 = torch.stack([self.cache.latents(s) for s in samples])
        else:
            pixels = torch.stack([s.pixels if s.kind == "video" else s.pixels.unsqueeze(1) for s in samples])
            with torch.no_grad():
                x0 = self.spec.encode_video(pixels).float()
        conds = [self.cache.prompt(s.caption) for s in samples]
        cond = {k: torch.cat([c[k] for c in conds]).to(self.spec.device) for k in conds[0]}
        return samples, x0.to(self.spec.device), cond, weight

    # ------------------------------------------------------------------ one step
    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        w = cfg.warmup_steps
        factor = min(1.0, (step + 1) / w) if w > 0 else 1.0
        if cfg.lr_schedule == "cosine" and step >= w:
            progress = (step - w) / max(1, cfg.steps - 1 - w)
            factor *= cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return factor

    def step_plan(self, step: int) -> tuple[StageSpan, list[Pass], list[str]]:
        """The stage of ``step``, its passes and the branches it trains (the same on every process)."""
        span = stage_at(self.spans, step)
        gen = torch.Generator().manual_seed(_plan_seed(self.config.seed, step))
        passes = self.recipe.passes(step, span.stage, gen)
        if not passes:
            raise ConfigError(f"recipe {self.recipe.name} planned no pass for step {step}")
        adapters = self.recipe.adapter_names()
        for p in passes:
            check_pass(p, span, list(self.branches), self._pools, adapters)
        trained = [b for b in self.branches if any(b in self._pass_train(p, span) for p in passes)]
        return span, passes, trained

    def _pass_train(self, p: Pass, span: StageSpan) -> tuple[str, ...]:
        if p.train is not None:
            return p.train
        return span.stage.train if span.stage.train is not None else tuple(self.branches)

    def _set_trainable(self, train: tuple[str, ...]) -> None:
        for b, params in self.branches.items():
            flag = b in train
            for p in params:
                p.requires_grad_(flag)

    def _step_optimizers(self, span: StageSpan, trained: list[str]) -> list[torch.optim.Optimizer]:
        if list(self.optimizers) == ["default"]:
            return [self.optimizers["default"]]
        return [self.optimizers[self._opt_key(b, span.stage.optimizer)] for b in trained if self.branches[b]]

    def train_step(self, step: int) -> tuple[float, dict[str, float]]:
        cfg = self.config
        span, passes, trained = self.step_plan(step)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        named = self.recipe.adapter_names()
        total = 0.0
        parts: dict[str, float] = {}
        try:
            for micro in range(cfg.gradient_accumulation_steps):
                seed = _step_seed(cfg.seed, step * cfg.gradient_accumulation_steps + micro, self.rank)
                gen = torch.Generator().manual_seed(seed)
                torch.manual_seed(seed)  # dropout and any other global-RNG use inside the model
                for p in passes:
                    self._set_trainable(self._pass_train(p, span))
                    if named:
                        self.recipe.set_adapter_scales({a: float(p.scales.get(a, self.recipe.config.scale)) for a in named})
                    loss, terms = self._pass(step, span, p, gen, len(passes) > 1)
                    self.accelerator.backward(loss)
                    total += float(loss.detach())
                    for k, v in terms.items():
                        parts[k] = parts.get(k, 0.0) + float(v.detach()) / cfg.gradient_accumulation_steps
                    self.recipe.after_backward(step, p.pool)
        finally:
            self._set_trainable(tuple(self.branches))
            if named:
                self.recipe.reset_schedule()
        params = [p for b in trained for p in self.branches[b]]
        if self.world > 1:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                p.grad = self.accelerator.reduce(p.grad, reduction="mean")
        if cfg.max_grad_norm and cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        factor = self._lr_factor(step)
        stage = span.stage
        for key, opt in self.optimizers.items():
            for g, base, wd in zip(opt.param_groups, self.base_lrs[key], self.base_wds[key]):
                g["lr"] = (base if stage.learning_rate is None else float(stage.learning_rate)) * factor
                if "weight_decay" in g:
                    g["weight_decay"] = wd if stage.weight_decay is None else float(stage.weight_decay)
        for opt in self._step_optimizers(span, trained):
            opt.step()
        return total, parts

    def _pass(self, step: int, span: StageSpan, p: Pass, gen: torch.Generator, prefix: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward pass and its loss (already divided by the accumulation steps)."""
        cfg = self.config
        kind = p.pool
        if kind == "video" and self._images_only:
            kind = "image"  # appearance customization from reference images alone
        self.recipe.on_step_start(step, kind)
        samples, x0, cond, weight = self._draw(kind, gen, span, p.flip)
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        noise = self.recipe.training_noise(noise, kind, p.name, gen)  # input and target alike
        ts = cfg.timestep_settings(step)
        if hasattr(self.schedule, "shift"):
            self.schedule.shift = float(ts["shift"])
        t = self.schedule.sample_timesteps(
            x0.shape[0], gen, ts["distribution"], self.recipe.train_range, ts["logit_mean"], ts["logit_std"], device=x0.device
        )
        x_t = self.schedule.add_noise(x0, noise, t)
        target = self.schedule.target(x0, noise, t)
        custom = getattr(self.data, "training_input", None)
        if custom is not None:
            # a data source may make the noisy input (and the matching target) its own way
            made = custom(samples, x0, noise, t, self.schedule)
            if made is not None:
                x_t, target = made
        indices = [s.frame_indices for s in samples]
        frame_indices = torch.stack(indices) if all(i is not None for i in indices) else None
        call = DenoiserCall("train", t, tuple(x_t.shape), frame_indices, p.name, step=step)
        with self.accelerator.autocast():
            pred = denoiser_call(self.spec, self.recipe, x_t, t, cond, call)
        ctx = LossContext(self.spec, kind, x0, noise, x_t, t, cond, pred.float(), target.float(), step, {"generator": gen}, weight,
                          pass_name=p.name, pool=kind)
        terms = self.recipe.losses(ctx)
        if prefix and p.name:
            terms = {f"{p.name}/{k}": v for k, v in terms.items()}
        loss = sum(terms.values()) / cfg.gradient_accumulation_steps
        return loss, terms

    # ------------------------------------------------------------------ loop
    def _resume(self) -> int:
        self.seconds_before = 0.0
        if not self.config.resume:
            return 0
        path = latest_checkpoint(self.config.output_dir)
        if path is None:
            return 0
        step, adapter, opt_tensors, state = load_checkpoint(path)
        if step > self.config.steps:
            raise ConfigError(f"{path} is step {step}, past this run's steps={self.config.steps}: "
                              f"set steps to {step} or more, or train into another output folder")
        saved = state.get("fingerprint")
        if saved is None:
            log.warning("%s has no run fingerprint (an older checkpoint): resuming it as this run", path)
        else:
            differ = _differences(saved, _normalized(self.fingerprint()))
            if differ:
                raise ConfigError(f"{self.config.output_dir} holds checkpoints of another run ({', '.join(differ)} differ): "
                                  f"pick another output folder, or pass --no-resume (resume=False) to start over")
        self.recipe.load_state_dict(adapter)
        optimizers_from_tensors(self.optimizers, opt_tensors, state["optimizer"])
        saved = state.get("base_lrs")
        if isinstance(saved, list):  # one optimizer (the format of one-branch runs)
            saved = {"default": saved}
        if saved is not None:
            self.base_lrs = {k: list(saved.get(k, self.base_lrs[k])) for k in self.base_lrs}
        self.seconds_before = None if state.get("seconds") is None else float(state["seconds"])
        return step

    def _checkpoint(self, step: int) -> None:
        if self.accelerator.is_main_process:
            self._write_checkpoint(step)
        self.accelerator.wait_for_everyone()

    def _write_checkpoint(self, step: int) -> None:
        base_lrs: Any = self.base_lrs["default"] if list(self.base_lrs) == ["default"] else self.base_lrs
        save_checkpoint(
            self.run_dir,
            step,
            self.recipe.state_dict(),
            self.optimizers,
            {"base_lrs": base_lrs, "recipe": self.recipe.name, "seconds": self._total_seconds(), "fingerprint": self.fingerprint()},
            keep=self.config.keep_checkpoints,
        )

    def fingerprint(self) -> dict[str, Any]:
        """What makes a checkpoint this run's: the recipe and its settings, the backbone, the training
        data and the settings that change the result (:data:`RESULT_SETTINGS`; ``steps`` only with a
        cosine schedule, whose pace they set: a constant-rate run may be resumed with more steps)."""
        if self._fingerprint is None:
            cfg = self.config
            settings = {k: getattr(cfg, k) for k in RESULT_SETTINGS}
            settings["steps"] = cfg.steps if cfg.lr_schedule == "cosine" else None
            self._fingerprint = {
                "recipe": {"name": self.recipe.name, "config": self.recipe.config.to_dict()},
                "backbone": backbone_identity(self.spec),
                "data": data_fingerprint(self.data),
                "settings": settings,
            }
        return self._fingerprint

    def _validate(self, step: int) -> None:
        if not (self.accelerator.is_main_process and self.config.validation_prompts):
            return
        from motiontune.data.video_io import write_video
        from motiontune.diffusion.sampling import SamplingConfig, generate

        self.spec.denoiser.eval()
        f, h, w = self.metadata.get("size", self.spec.default_size)
        cfg = SamplingConfig(num_inference_steps=self.config.validation_steps, num_frames=f, height=h, width=w, seed=self.config.seed)
        videos = generate(self.spec, list(self.config.validation_prompts), self.recipe, cfg, progress=False, phase="validation")
        folder = os.path.join(self.run_dir, "validation", f"step-{step:06d}")
        for i, v in enumerate(videos):
            write_video(v, os.path.join(folder, f"{i:02d}.mp4"), fps=self.spec.default_fps)
        self.spec.denoiser.train()

    def _total_seconds(self) -> float | None:
        if self.seconds_before is None:
            return None
        return self.seconds_before + (time.time() - self._began if self._began is not None else 0.0)

    def train(self) -> TrainResult:
        cfg = self.config
        main = self.accelerator.is_main_process
        if main:
            clean_leftovers(cfg.output_dir)
        self.accelerator.wait_for_everyone()
        os.makedirs(cfg.output_dir, exist_ok=True)
        start = self._resume()
        # a run that does not go on from a checkpoint never writes over a saved run: it trains in a
        # folder beside the output folder, which takes the output folder's place when the run ends
        staged = start == 0 and holds_run(cfg.output_dir)
        if staged:
            self.run_dir = staging_paths(cfg.output_dir)[0]
            if main:
                os.makedirs(self.run_dir)
            project = self.accelerator.project_configuration
            project.project_dir = project.logging_dir = self.run_dir
        try:
            result = self._train(start)
        except BaseException:
            if staged and main:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        if staged and main:
            swap_in(self.run_dir, cfg.output_dir)
            self.run_dir = cfg.output_dir
        self.accelerator.wait_for_everyone()
        return result

    def _check_finite(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise TrainingDiverged(f"training diverged at step {step + 1}: the loss is {loss}; nothing of this step is saved (try a lower learning rate)")
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.params]).all()):
            raise TrainingDiverged(f"training diverged at step {step + 1}: trainable weights became NaN or infinite; "
                                   f"nothing of this step is saved (try a lower learning rate)")

    def _train(self, start: int) -> TrainResult:
        cfg = self.config
        if cfg.tensorboard:
            self.accelerator.init_trackers("motiontune", config={k: v for k, v in asdict(cfg).items() if isinstance(v, (int, float, str, bool))})
        losses: list[float] = []
        began = self._began = time.time()
        bar = progress(
            total=cfg.steps, initial=start, desc=f"training {self.recipe.name}", unit="step",
            disable=not (cfg.progress and self.accelerator.is_local_main_process), dynamic_ncols=True,
        )
        loss = math.nan
        end = cfg.steps if cfg.stop_at is None else max(start, cfg.stop_at)
        for step in range(start, end):
            loss, parts = self.train_step(step)
            self._check_finite(step, loss)
            losses.append(loss)
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update(1)
            if cfg.tensorboard and (step + 1) % max(1, cfg.log_every) == 0:
                self.accelerator.log({"loss": loss, **{f"loss/{k}": v for k, v in parts.items()}}, step=step + 1)
            done = step + 1
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
                self._checkpoint(done)
            if cfg.validation_every and done % cfg.validation_every == 0:
                self._validate(done)
        bar.close()
        if end < cfg.steps:
            # stopped early on purpose: a checkpoint to resume from, nothing final
            if not (cfg.checkpoint_every and end % cfg.checkpoint_every == 0) and end > start:
                self._checkpoint(end)
            return TrainResult(cfg.output_dir, end, loss, losses, time.time() - began, start, self.recipe, finished=False,
                               total_seconds=self._total_seconds())
        self.spec.denoiser.eval()
        if self.accelerator.is_main_process:
            self.save_final()
        self.accelerator.wait_for_everyone()
        if cfg.tensorboard:
            self.accelerator.end_training()
        return TrainResult(cfg.output_dir, cfg.steps, loss, losses, time.time() - began, start, self.recipe,
                           total_seconds=self._total_seconds())

    def save_final(self) -> None:
        meta = {
            # the model as the user named it ('toy', an alias, a hub id; a folder as an absolute path), not
            # the folder it was found in here, so that the adapter loads on another machine
            "backbone": {"family": self.spec.family, "source": getattr(self.spec, "name", self.spec.source)},
            "training": {k: v for k, v in asdict(self.config).items() if k not in ("progress",)},
            "stages": stage_summary(self.spans),
            **self.metadata,
        }
        check_finite(self.recipe.state_dict(), f"{self.config.output_dir}: the final adapter")
        self.recipe.save(self.run_dir, meta)
        # the final adapter is also a complete checkpoint, so a finished run resumes as finished
        self._write_checkpoint(self.config.steps)

    @staticmethod
    def read_metadata(folder: str) -> dict[str, Any]:
        with open(os.path.join(folder, "motiontune.json"), encoding="utf-8") as fh:
            return json.load(fh)


def backbone_identity(spec: "BackboneSpec") -> dict[str, Any]:
    """The backbone in a run's fingerprint: its family, its hub id (None for a local folder, so that
    a folder may move) and a hash of its denoiser's configuration."""
    config = getattr(spec.denoiser, "config", None) or {}
    config = {k: v for k, v in dict(config).items() if not str(k).startswith("_")}
    return {"family": spec.family, "model": None if os.path.isdir(spec.source) else spec.source, "denoiser": content_key(config)}


def data_fingerprint(data: Any) -> str | None:
    """A hash of the training data: a source's own ``fingerprint()`` when it has one, else, for
    :class:`TrainingData`, the content of its samples (pixels or latents, captions, loss weights; not
    the file names); None (data left out of the fingerprint) for a source that offers none."""
    own = getattr(data, "fingerprint", None)
    if callable(own):
        return own()
    if isinstance(data, TrainingData):
        return content_key(*[x for s in [*data.videos, *data.images] for x in (s.kind, s.caption, s.pixels, s.latents, s.loss_weight)])
    return None


def _normalized(value: Any) -> Any:
    """``value`` as it reads back from a checkpoint's state.json."""
    return json.loads(json.dumps(value, default=str))


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two fingerprints."""
    if isinstance(saved, dict) and isinstance(current, dict):
        return [d for k in sorted(set(saved) | set(current)) for d in _differences(saved.get(k), current.get(k), f"{prefix}{k}.")]
    return [] if saved == current else [prefix.rstrip(".") or "fingerprint"]


def usable_frames(n: int, rule: Any) -> int:
    """The largest frame count <= ``n`` that ``rule`` (a FrameRule) accepts and that is still a clip
    (2 frames or more); 0 if none."""
    for m in range(n, 1, -1):
        if rule.is_valid(m):
            return m
    return 0
