"""Speed and memory of LoRA training and sampling for one backbone at one size.

Measures

* seconds per training step: the ``lora`` recipe through motiontune's ``Trainer.train_step``,
  batch 1, the median of ``--train-steps`` steps after ``--warmup`` warm-up steps;
* seconds per sampling step: ``motiontune.diffusion.sampling.denoise`` with
  ``num_inference_steps=--sample-steps`` and classifier-free guidance (the conditional and
  unconditional predictions go through the denoiser together as a batch of 2), total time
  divided by the number of steps, after a warm-up call;
* peak memory of each phase: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the peak
  resident set size (RSS) of the process (Linux: the peak is reset at the start of each phase
  through ``/proc/self/clear_refs``; elsewhere the growth of ``ru_maxrss``, a lower bound);
* with ``--overhead``: seconds per step of the Trainer against a bare hand-written loop
  (noise, add_noise, forward, MSE, backward, AdamW step) on a second copy of the same model
  with LoRA injected on the same modules, the same batch and the same optimizer settings; the
  two alternate step by step so that both see the same machine load. Each case runs a fresh
  Trainer (its own model copy) for ``--warmup`` untimed and ``--train-steps`` timed steps;
* with ``--overhead-two-stage``: the same for a recipe with two stages ("spatial" then
  "temporal", each training one of two named adapters, the switch half-way through the timed
  steps) against a loop that trains one adapter and then the other, one AdamW each;
* with ``--overhead-motiondirector``: the same for the ``motiondirector`` recipe with
  ``spatial_dropout=0`` (every step: a one-frame pass training the spatial adapter with the
  temporal one at scale 0, a clip pass training the temporal adapter with the debiased loss,
  two AdamW steps) against a loop doing that work by hand.

Model sources (exactly one):

* ``--backbone SOURCE``: anything ``motiontune.backbones.load_backbone`` takes (alias, hub id,
  local folder, ``toy``);
* ``--tiny FAMILY``: the tiny random configuration of ``motiontune.testing.tiny`` written to a
  temporary folder and loaded through ``load_backbone``;
* ``--random-config NAME``: a full-size published architecture with random weights. Only the
  denoiser is built (no text encoder, no VAE): training uses random latents of the right shape
  and random text embeddings of the right shape, so the numbers time the denoiser (transformer)
  and the LoRA training step only, not prompt encoding or VAE encode/decode.

Examples::

    python benchmarks/speed.py --tiny wan --num-frames 9 --height 32 --width 32 --overhead
    python benchmarks/speed.py --backbone toy --num-frames 17 --height 32 --width 32 --threads 1 --no-sample \\
        --overhead --overhead-two-stage --overhead-motiondirector --train-steps 40
    python benchmarks/speed.py --random-config wan2.1-1.3b --num-frames 5 --height 64 --width 64 \\
        --train-steps 2 --sample-steps 2 --warmup 1
    python benchmarks/speed.py --backbone wan2.1-1.3b --device cuda --dtype bfloat16 \\
        --num-frames 81 --height 480 --width 832 --gradient-checkpointing
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from motiontune.recipes.lora import LoraRecipeConfig
from motiontune.recipes.multi import AdapterDecl, NamedLoraRecipe
from motiontune.training.plan import Stage

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
CAPTION = "a red circle moves left"
SECTION = "## Speed and memory"
TABLE_BEGIN = "<!-- speed-table:begin (written by benchmarks/speed.py --append-results; rows are kept in the comment below) -->"
TABLE_END = "<!-- speed-table:end -->"
ROWS_PREFIX = "<!-- speed-rows: "


# ---------------------------------------------------------------------------------------- random configs
@dataclass(frozen=True)
class RandomConfig:
    """A published denoiser architecture, built at full size with random weights."""

    family: str
    denoiser_cls: str
    denoiser_kwargs: dict[str, Any]
    scheduler_cls: str
    scheduler_kwargs: dict[str, Any]
    latent_channels: int
    spatial_compression: int
    temporal_compression: int
    #: name -> shape (without the batch dimension) of each random conditioning tensor
    conditioning: dict[str, tuple[int, ...]]
    published: str


RANDOM_CONFIGS: dict[str, RandomConfig] = {
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers, transformer/config.json and scheduler/scheduler_config.json
    "wan2.1-1.3b": RandomConfig(
        family="wan",
        denoiser_cls="WanTransformer3DModel",
        denoiser_kwargs=dict(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
        ),
        scheduler_cls="UniPCMultistepScheduler",
        scheduler_kwargs=dict(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                              flow_shift=3.0),
        latent_channels=16, spatial_compression=8, temporal_compression=4,
        conditioning={"encoder_hidden_states": (512, 4096)},  # UMT5-XXL, 512 tokens
        published="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    ),
    # THUDM/CogVideoX-2b, transformer/config.json and scheduler/scheduler_config.json
    "cogvideox-2b": RandomConfig(
        family="cogvideox",
        denoiser_cls="CogVideoXTransformer3DModel",
        denoiser_kwargs=dict(
            num_attention_heads=30, attention_head_dim=64, in_channels=16, out_channels=16, flip_sin_to_cos=True,
            freq_shift=0, time_embed_dim=512, text_embed_dim=4096, num_layers=30, dropout=0.0, attention_bias=True,
            sample_width=90, sample_height=60, sample_frames=49, patch_size=2, temporal_compression_ratio=4,
            max_text_seq_length=226, activation_fn="gelu-approximate", timestep_activation_fn="silu",
            norm_elementwise_affine=True, norm_eps=1e-5, spatial_interpolation_scale=1.875,
            temporal_interpolation_scale=1.0, use_rotary_positional_embeddings=False,
            use_learned_positional_embeddings=False,
        ),
        scheduler_cls="CogVideoXDDIMScheduler",
        scheduler_kwargs=dict(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=True, steps_offset=0, prediction_type="v_prediction",
            timestep_spacing="trailing", rescale_betas_zero_snr=True, snr_shift_scale=3.0,
        ),
        latent_channels=16, spatial_compression=8, temporal_compression=4,
        conditioning={"encoder_hidden_states": (226, 4096)},  # T5-XXL, 226 tokens
        published="THUDM/CogVideoX-2b",
    ),
}


def build_random_spec(name: str, device: str | torch.device, dtype: torch.dtype, seed: int = 0):
    """A backbone spec holding only the full-size denoiser (random weights) and the scheduler.

    Prompts encode to random embeddings of the published text encoder's shape; there is no VAE,
    so training data must be given as latents.
    """
    import diffusers

    from motiontune.backbones import get_spec_class

    if name not in RANDOM_CONFIGS:
        raise SystemExit(f"unknown --random-config {name!r}; known: {', '.join(sorted(RANDOM_CONFIGS))}")
    rc = RANDOM_CONFIGS[name]
    base = get_spec_class(rc.family)

    class DenoiserOnlySpec(base):  # type: ignore[misc, valid-type]
        @property
        def latent_channels(self) -> int:
            return rc.latent_channels

        @property
        def spatial_compression(self) -> int:
            return rc.spatial_compression

        @property
        def temporal_compression(self) -> int:
            return rc.temporal_compression

        def _encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
            out: dict[str, list[torch.Tensor]] = {k: [] for k in rc.conditioning}
            for p in prompts:
                g = torch.Generator().manual_seed(sum(map(ord, p)) + 7 * len(p))
                for k, shape in rc.conditioning.items():
                    out[k].append(torch.randn((1, *shape), generator=g))
            return {k: torch.cat(v).to(self.device, self.dtype) for k, v in out.items()}

        def encode_video(self, pixels, sample=False, generator=None):
            raise RuntimeError("--random-config builds the denoiser only (no VAE); give latents")

        def decode_latents(self, latents):
            raise RuntimeError("--random-config builds the denoiser only (no VAE)")

    denoiser = _random_denoiser(getattr(diffusers, rc.denoiser_cls), rc.denoiser_kwargs, dtype, seed)
    scheduler = getattr(diffusers, rc.scheduler_cls)(**rc.scheduler_kwargs)
    pipe = base.pipeline_cls(tokenizer=None, text_encoder=None, vae=None, transformer=denoiser, scheduler=scheduler)
    return DenoiserOnlySpec(pipe, source=f"random:{name}", device=device, dtype=dtype)


def _random_denoiser(cls: type, kwargs: dict[str, Any], dtype: torch.dtype, seed: int) -> torch.nn.Module:
    """Build ``cls(**kwargs)`` without running its weight initialisation, then fill the weights.

    Matrices get values uniform in +-1/sqrt(fan_in) (the scale of PyTorch's default Linear init)
    copied from one seeded random block, biases zeros, other vectors (norm scales) ones; buffers
    (RoPE tables) are built by the constructor as usual. Drawing 1.4e9 fresh random numbers on a
    small CPU takes longer than the measurements themselves; the values do not change the timing.
    """
    import math

    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = cls(**kwargs)
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    block = torch.empty(2**24).uniform_(-1.0, 1.0, generator=g)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                n = p.numel()
                if n > block.numel():
                    p.uniform_(-1.0, 1.0, generator=g)
                else:
                    start = int(torch.randint(0, block.numel() - n + 1, (1,), generator=g))
                    p.copy_(block[start:start + n].view_as(p))
                p.mul_(1.0 / math.sqrt(p[0].numel()))
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
    return model.to(dtype)


# ---------------------------------------------------------------------------------------- memory
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _maxrss_bytes() -> int:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024  # bytes on macOS, KiB elsewhere


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class MemoryMeter:
    """Peak memory of one phase: CUDA allocated bytes, or CPU process RSS."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> "MemoryMeter":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.prev_peak = _maxrss_bytes()
            self.was_reset = _reset_peak_rss()
            self.start = _rss_bytes() if self.was_reset else self.prev_peak
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            self.measure = "cuda_max_memory_allocated"
        else:
            self.peak = _maxrss_bytes()
            if self.was_reset and self.start is not None:
                self.measure = "cpu_peak_rss"
            else:  # growth of the process-lifetime peak: a lower bound of the phase's growth
                self.measure = "cpu_ru_maxrss_delta"
                self.start = self.prev_peak

    def result(self) -> dict[str, Any]:
        mib = 1024 * 1024
        return {
            "measure": self.measure,
            "peak_mib": round(self.peak / mib, 1),
            "start_mib": round(self.start / mib, 1),
            "growth_mib": round(max(0, self.peak - self.start) / mib, 1),
        }


# ---------------------------------------------------------------------------------------- timing helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _log(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(f"[speed] {message}", file=sys.stderr, flush=True)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def machine_info(device: torch.device) -> dict[str, Any]:
    import diffusers

    cpu_name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu_name = line.split(":", 1)[1].strip()
                    break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    info = {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": mem_gib,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError, AttributeError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


# ---------------------------------------------------------------------------------------- model loading
def load_source(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, workdir: str):
    """(spec, description) of the model chosen by --backbone / --tiny / --random-config."""
    from motiontune.backbones import load_backbone

    if args.random_config:
        spec = build_random_spec(args.random_config, device, dtype, seed=args.seed)
        return spec, {"kind": "random-config", "name": args.random_config, "family": spec.family,
                      "architecture_of": RANDOM_CONFIGS[args.random_config].published}
    if args.tiny:
        from motiontune.testing.tiny import build_tiny

        folder = os.path.join(workdir, f"tiny_{args.tiny}")
        if not os.path.isdir(folder):
            build_tiny(args.tiny, folder, seed=args.seed)
        spec = load_backbone(folder, device=device, dtype=dtype)
        return spec, {"kind": "tiny", "name": args.tiny, "family": spec.family, "folder": folder}
    spec = load_backbone(args.backbone, family=args.family, device=device, dtype=dtype)
    return spec, {"kind": "backbone", "name": args.backbone, "family": spec.family, "source": spec.source}


def make_training_data(spec, latent_shape: tuple[int, ...], num_frames: int, height: int, width: int, seed: int, denoiser_only: bool):
    from motiontune.data.dataset import Sample, TrainingData

    g = torch.Generator().manual_seed(seed + 1)
    if denoiser_only:
        return TrainingData([Sample(None, CAPTION, latents=torch.randn(latent_shape[1:], generator=g))])
    video = torch.rand(3, num_frames, height, width, generator=g) * 2 - 1
    return TrainingData([Sample(video, CAPTION)])


# ---------------------------------------------------------------------------------------- measurements
def measure_training(spec, recipe, data, args, device: torch.device, output_dir: str) -> tuple[Any, dict[str, Any]]:
    from motiontune.training.trainer import TrainConfig, Trainer

    total = args.warmup + args.train_steps
    cfg = TrainConfig(output_dir=output_dir, steps=total, progress=False, batch_size=1, seed=args.seed,
                      mixed_precision=args.mixed_precision, gradient_checkpointing=args.gradient_checkpointing,
                      checkpoint_every=0)
    with MemoryMeter(device) as mem:
        trainer = Trainer(spec, recipe, data, cfg)
        times, losses = [], []
        for step in range(total):
            box: dict[str, float] = {}

            def one(step: int = step) -> None:
                box["loss"] = trainer.train_step(step)[0]

            times.append(_timed(one, device))
            losses.append(box["loss"])
            _log(args, f"train step {step + 1}/{total}{' (warm-up)' if step < args.warmup else ''}: {times[-1]:.3f} s")
    measured = times[args.warmup:]
    return trainer, {
        "seconds_per_step": statistics.median(measured),
        "step_seconds": [round(t, 4) for t in measured],
        "warmup_seconds": [round(t, 4) for t in times[: args.warmup]],
        "losses": [round(float(x), 5) for x in losses],
        "trainable_parameters": sum(p.numel() for p in trainer.params),
        "memory": mem.result(),
    }


def measure_sampling(spec, recipe, args, device: torch.device) -> dict[str, Any]:
    from motiontune.diffusion.sampling import SamplingConfig, denoise, initial_noise

    guidance = args.guidance if args.guidance is not None else spec.default_guidance
    spec.denoiser.eval()
    calls = {"n": 0, "rows": 0}
    original = spec.predict

    def counting_predict(x_t, t, cond, **kw):
        calls["n"] += 1
        calls["rows"] += int(x_t.shape[0])
        return original(x_t, t, cond, **kw)

    def run(steps: int) -> None:
        cfg = SamplingConfig(num_inference_steps=steps, guidance_scale=guidance, num_frames=args.num_frames,
                             height=args.height, width=args.width, seed=args.seed)
        cond = spec.encode_prompt([CAPTION])
        uncond = spec.encode_prompt([""]) if guidance != 1.0 else None
        latents = initial_noise(spec, cfg, 1)
        denoise(spec, latents, cond, uncond, cfg, recipe, progress=False)

    with MemoryMeter(device) as mem:
        warm = _timed(lambda: run(args.sample_warmup), device) if args.sample_warmup > 0 else None
        if warm is not None:
            _log(args, f"sampling warm-up ({args.sample_warmup} steps): {warm:.3f} s")
        spec.predict = counting_predict  # instance attribute shadows the method during the timed call
        try:
            total = _timed(lambda: run(args.sample_steps), device)
        finally:
            del spec.predict
        _log(args, f"sampling ({args.sample_steps} steps): {total:.3f} s")
    return {
        "seconds_per_step": total / args.sample_steps,
        "total_seconds": round(total, 4),
        "steps": args.sample_steps,
        "guidance_scale": guidance,
        "predict_calls_per_step": calls["n"] / args.sample_steps,
        "predict_rows_per_step": calls["rows"] / args.sample_steps,
        "warmup_seconds": round(warm, 4) if warm is not None else None,
        "memory": mem.result(),
    }


# ---------------------------------------------------------------------------------------- trainer vs bare loop
# Each case trains one recipe through a fresh Trainer (on its own copy of the model, its steps laid
# out over the warm-up and timed steps) and the same work written out by hand on a second copy with
# the same LoRA adapters injected on the same modules; the two alternate step by step.
OVERHEAD_NOTE = ("steps alternate between the two loops (and which goes first); the Trainer step includes its "
                 "default gradient clipping (max_grad_norm=1.0), the latent/prompt cache lookups and the seeded "
                 "per-step generators; the bare loop does not clip")


@dataclass
class TwoStageLoraConfig(LoraRecipeConfig):
    #: optimizer steps of the first stage ("spatial"); the second ("temporal") takes the rest
    first_stage_steps: int = 1


class TwoStageLoraRecipe(NamedLoraRecipe):
    """Two named LoRA adapters trained one after the other: stage "spatial" trains only the first,
    stage "temporal" only the second (both on clips, plain diffusion loss; placed as motiondirector
    places its adapters). Used only here, to time a run with a stage switch."""

    name = "two-stage-lora"
    config_cls = TwoStageLoraConfig
    inference_adapters = ("spatial", "temporal")

    def adapter_plan(self, spec) -> dict[str, AdapterDecl]:
        from motiontune.recipes.motiondirector import default_placement

        cfg = self.config
        spatial, temporal = default_placement(spec)
        return {"spatial": AdapterDecl(spatial, cfg.projections, cfg.rank, cfg.alpha, cfg.dropout),
                "temporal": AdapterDecl(temporal, cfg.projections, cfg.rank, cfg.alpha, cfg.dropout)}

    def stages(self) -> list[Stage]:
        return [Stage(name="spatial", steps=self.config.first_stage_steps, train=("spatial",)),
                Stage(name="temporal", train=("temporal",))]


def _bare_forward(spec, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
    if spec.family == "wan":  # the denoiser called directly
        return spec.denoiser(hidden_states=x_t.to(spec.dtype), timestep=t,
                             encoder_hidden_states=cond["encoder_hidden_states"].to(spec.dtype), return_dict=False)[0]
    return spec.predict(x_t, t, cond)  # other families: the spec's thin call (layout permutes, extra inputs)


class BareLoop:
    """The hand-written side: a copy of the model with the trainer's LoRA adapters injected by hand
    (same modules, rank, alpha, dropout), one AdamW per adapter with the trainer's settings, and the
    trainer's reference clip encoded once."""

    def __init__(self, spec, adapters: dict[str, tuple[list[str], int, float, float]], trainer, args, device: torch.device):
        from motiontune.adapters.lora import inject_lora, lora_layers, lora_parameters

        self.spec, self.device = spec, device
        torch.manual_seed(args.seed)
        for name, (targets, rank, alpha, dropout) in adapters.items():
            inject_lora(spec.denoiser, targets, rank, alpha, dropout, adapter_name=name)
        spec.denoiser.train()
        if args.gradient_checkpointing and hasattr(spec.denoiser, "enable_gradient_checkpointing"):
            spec.denoiser.enable_gradient_checkpointing()
        self.layers = lora_layers(spec.denoiser)
        self.params = {name: list(lora_parameters(spec.denoiser, name).values()) for name in adapters}
        self.opts = {}
        for name, params in self.params.items():
            theirs = trainer.branches[name]
            if [p.shape for p in params] != [p.shape for p in theirs]:
                raise RuntimeError(f"adapter {name!r}: the bare loop has {len(params)} LoRA tensors, the trainer {len(theirs)}")
            group = trainer.optimizers[name].param_groups[0]
            self.opts[name] = torch.optim.AdamW(params, lr=group["lr"], betas=group["betas"], eps=group["eps"],
                                                weight_decay=group["weight_decay"])
        self.autocast = (torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[args.mixed_precision])
                         if args.mixed_precision != "no" and device.type == "cuda" else contextlib.nullcontext())
        # the batch the trainer sees: its reference clip (latents given, or encoded here) and its prompt
        self.sample = trainer.data.videos[0]
        with torch.no_grad():
            self.x0 = self.encode(self.sample.pixels) if self.sample.latents is None else self.sample.latents.float().unsqueeze(0).to(device)
            self.cond = spec.encode_prompt([self.sample.caption])
        self.gen = torch.Generator().manual_seed(args.seed + 99)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Latents (1, C, f, h, w) of pixels (3, F, H, W)."""
        with torch.no_grad():
            return self.spec.encode_video(pixels.unsqueeze(0)).float().to(self.device)

    def train_only(self, name: str) -> None:
        for other, params in self.params.items():
            for p in params:
                p.requires_grad_(other == name)

    def set_scale(self, name: str, scale: float) -> None:
        for layer in self.layers:
            layer.set_scale(name, scale)

    def predict(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise ``x0`` at a random timestep and run the denoiser: (prediction, target), float32."""
        from motiontune.diffusion.schedules import FlowMatchSchedule

        schedule = self.spec.schedule
        T = schedule.num_train_timesteps
        noise = torch.randn(x0.shape, generator=self.gen).to(x0)
        if isinstance(schedule, FlowMatchSchedule):
            t = torch.rand(1, generator=self.gen).to(self.device) * T
            s = t.view(-1, 1, 1, 1, 1) / T
            x_t = (1 - s) * x0 + s * noise
            target = noise - x0
        else:
            t = torch.randint(0, T, (1,), generator=self.gen)
            a = schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1).to(self.device)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            target = noise if schedule.prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
            t = t.to(self.device)
        with self.autocast:
            pred = _bare_forward(self.spec, x_t, t, self.cond)
        return pred.float(), target.float()


def _overhead_trainer(spec, recipe, data, args, output_dir: str):
    from motiontune.training.trainer import TrainConfig, Trainer

    cfg = TrainConfig(output_dir=output_dir, steps=args.warmup + args.train_steps, progress=False, batch_size=1,
                      seed=args.seed, mixed_precision=args.mixed_precision,
                      gradient_checkpointing=args.gradient_checkpointing, checkpoint_every=0)
    return Trainer(spec, recipe, data, cfg)


def _named_adapters(recipe, spec) -> dict[str, tuple[list[str], int, float, float]]:
    """name -> (target modules, rank, alpha, dropout) of a NamedLoraRecipe's adapters on ``spec``."""
    from motiontune.adapters.lora import lora_target_modules

    return {name: (lora_target_modules(spec.sites(d.attention), d.projections), d.rank, d.alpha, d.dropout)
            for name, d in recipe.adapter_plan(spec).items()}


def _alternate(trainer, bare: BareLoop, bare_step: Callable[[int], None], args, device: torch.device, label: str) -> dict[str, Any]:
    """Warm-up steps, then ``--train-steps`` timed steps of each loop, alternating (and alternating which
    goes first); step i of one loop does the work of step i of the other."""
    from motiontune.training.plan import stage_summary

    before = {"motiontune": {b: [p.detach().clone() for p in ps] for b, ps in trainer.branches.items()},
              "bare": {b: [p.detach().clone() for p in ps] for b, ps in bare.params.items()}}
    for i in range(args.warmup):
        _timed(lambda i=i: bare_step(i), device)
        _timed(lambda i=i: trainer.train_step(i), device)
    _log(args, f"overhead ({label}): warm-up done")
    mt, bt, stages, passes = [], [], {}, set()
    for i in range(args.warmup, args.warmup + args.train_steps):
        span, plan, _ = trainer.step_plan(i)
        stages[span.stage.name] = stages.get(span.stage.name, 0) + 1
        passes.add(len(plan))
        order = ("mt", "bare") if i % 2 == 0 else ("bare", "mt")
        for which in order:
            if which == "mt":
                mt.append(_timed(lambda i=i: trainer.train_step(i), device))
            else:
                bt.append(_timed(lambda i=i: bare_step(i), device))
    after = {"motiontune": trainer.branches, "bare": bare.params}
    moved = {side: sorted(b for b, ps in after[side].items()
                          if any(not torch.equal(p.detach(), q) for p, q in zip(ps, before[side][b])))
             for side in before}
    m, b = statistics.median(mt), statistics.median(bt)
    _log(args, f"overhead ({label}): motiontune {m:.4g} s/step, bare {b:.4g} s/step, ratio {m / b:.3f}")
    return {
        "recipe": trainer.recipe.name,
        "motiontune_seconds_per_step": m,
        "bare_seconds_per_step": b,
        "ratio": m / b,
        "motiontune_step_seconds": [round(x, 4) for x in mt],
        "bare_step_seconds": [round(x, 4) for x in bt],
        "stages": stage_summary(trainer.spans),
        "timed_steps_per_stage": stages,
        "passes_per_step": sorted(passes),
        "trainable_parameters": {k: sum(p.numel() for p in ps) for k, ps in trainer.branches.items()},
        "branches_moved": moved,
    }


def overhead_lora(make_copy: Callable[[], Any], data, args, device: torch.device, output_dir: str) -> dict[str, Any]:
    """The ``lora`` recipe against noise, add_noise, forward, MSE, backward, AdamW step."""
    from motiontune.adapters.lora import lora_target_modules
    from motiontune.recipes import make_recipe

    recipe = make_recipe("lora", rank=args.lora_rank, alpha=float(args.lora_rank))
    trainer = _overhead_trainer(make_copy(), recipe, data, args, output_dir)
    cfg = recipe.config
    targets = lora_target_modules(recipe.select_sites(trainer.spec), cfg.projections)
    bare = BareLoop(make_copy(), {"default": (targets, cfg.rank, cfg.alpha, cfg.dropout)}, trainer, args, device)
    opt = bare.opts["default"]

    def bare_step(step: int) -> None:
        opt.zero_grad(set_to_none=True)
        pred, target = bare.predict(bare.x0)
        torch.nn.functional.mse_loss(pred, target).backward()
        opt.step()

    out = _alternate(trainer, bare, bare_step, args, device, "lora")
    out["note"] = OVERHEAD_NOTE
    return out


def overhead_two_stage(make_copy: Callable[[], Any], data, args, device: torch.device, output_dir: str) -> dict[str, Any]:
    """Two named adapters, stage "spatial" then stage "temporal" (the switch half-way through the timed
    steps), against a loop that trains one adapter, then the other, with one AdamW each."""
    first = args.warmup + args.train_steps // 2
    recipe = TwoStageLoraRecipe(rank=args.lora_rank, alpha=float(args.lora_rank), first_stage_steps=first)
    trainer = _overhead_trainer(make_copy(), recipe, data, args, output_dir)
    bare_spec = make_copy()
    bare = BareLoop(bare_spec, _named_adapters(recipe, bare_spec), trainer, args, device)
    state = {"branch": None}

    def bare_step(step: int) -> None:
        branch = "spatial" if step < first else "temporal"
        if branch != state["branch"]:  # the stage switch: the other adapter becomes the trainable one
            bare.train_only(branch)
            state["branch"] = branch
        opt = bare.opts[branch]
        opt.zero_grad(set_to_none=True)
        pred, target = bare.predict(bare.x0)
        torch.nn.functional.mse_loss(pred, target).backward()
        opt.step()

    out = _alternate(trainer, bare, bare_step, args, device, "two-stage")
    out["note"] = (OVERHEAD_NOTE + f"; stage 'spatial' trains one adapter for steps 0-{first - 1}, stage 'temporal' "
                   f"the other from step {first} (both adapters on the same attention of DiTs, both on clips); "
                   f"the first 'temporal' step also creates that adapter's AdamW state, in both loops")
    return out


def overhead_motiondirector(make_copy: Callable[[], Any], data, args, device: torch.device, output_dir: str) -> dict[str, Any]:
    """``motiondirector`` (spatial_dropout=0: both passes every step) against a loop doing per step:
    a one-frame forward/backward training the spatial adapter with the temporal one at scale 0, a clip
    forward/backward training the temporal adapter with the spatial one at scale 1 (diffusion plus
    debiased loss), then both AdamW steps."""
    from motiontune.data.dataset import Sample
    from motiontune.losses import debiased_loss
    from motiontune.recipes import make_recipe

    recipe = make_recipe("motiondirector", rank=args.lora_rank, spatial_dropout=0.0)
    trainer = _overhead_trainer(make_copy(), recipe, data, args, output_dir)
    bare_spec = make_copy()
    bare = BareLoop(bare_spec, _named_adapters(recipe, bare_spec), trainer, args, device)
    cfg = recipe.config
    clip = bare.sample.pixels
    # every frame of the clip and its mirror image, encoded once (the bare loop's frame pool); the
    # trainer's latent cache gets the same entries before timing, so neither loop times VAE encoding
    frames = []
    for f in range(clip.shape[1]):
        frames.append([bare.encode(px.unsqueeze(1)) for px in (clip[:, f], clip[:, f].flip(-1))])
        for px in (clip[:, f], clip[:, f].flip(-1)):
            trainer.cache.latents(Sample(px, bare.sample.caption, "image"))

    def bare_step(step: int) -> None:
        for opt in bare.opts.values():
            opt.zero_grad(set_to_none=True)
        # spatial pass: one random frame (mirrored with probability flip), temporal adapter off
        bare.train_only("spatial")
        bare.set_scale("temporal", 0.0)
        f = int(torch.randint(len(frames), (1,), generator=bare.gen))
        mirrored = float(torch.rand((), generator=bare.gen)) < cfg.flip
        pred, target = bare.predict(frames[f][int(mirrored)])
        torch.nn.functional.mse_loss(pred, target).backward()
        # temporal pass: the clip, spatial adapter on (scale 1) but not trained
        bare.train_only("temporal")
        bare.set_scale("temporal", 1.0)
        pred, target = bare.predict(bare.x0)
        loss = torch.nn.functional.mse_loss(pred, target) + debiased_loss(pred, target, bare.gen, cfg.beta, cfg.debias_alpha)
        loss.backward()
        for opt in bare.opts.values():
            opt.step()

    out = _alternate(trainer, bare, bare_step, args, device, "motiondirector")
    out["note"] = (OVERHEAD_NOTE + f"; two passes per step (one frame: spatial adapter, clip: temporal adapter), "
                   f"rank {cfg.rank}, LoRA dropout {cfg.dropout}, flip {cfg.flip}, spatial_dropout 0; both loops "
                   f"draw frames from latents encoded before timing")
    return out


OVERHEAD_CASES: dict[str, Callable[..., dict[str, Any]]] = {
    "overhead": overhead_lora,
    "overhead_two_stage": overhead_two_stage,
    "overhead_motiondirector": overhead_motiondirector,
}


# ---------------------------------------------------------------------------------------- table output
def _fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _fmt_params(n: int | None) -> str:
    if not n:
        return "? params"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit} params"
    return f"{n} params"


def _fmt_mem(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    return f"{m['peak_mib']:.0f} (+{m['growth_mib']:.0f})"


def summary_row(r: dict[str, Any]) -> dict[str, str]:
    src = r["source"]
    size = r["size"]
    params = _fmt_params(r["settings"].get("denoiser_parameters"))
    model = {"tiny": f"tiny {src['name']} ({params})",
             "random-config": f"{src['name']} (random weights, denoiser only, {params})",
             "backbone": f"{src['name']} ({params})"}[src["kind"]]
    mem = r["train"]["memory"]
    ov = r.get("overhead")
    mach = r["machine"]
    return {
        "model": model,
        "size": f"{size['num_frames']}x{size['height']}x{size['width']} -> {'x'.join(map(str, size['latent_shape'][1:]))}"
                f" ({size['video_tokens']} tokens)",
        "device": f"{mach['device']} {r['settings']['dtype']}"
                  + (f", {mach['torch_threads']} thread{'s' if mach['torch_threads'] != 1 else ''}" if mach["device"] == "cpu" else ""),
        "train": _fmt_s(r["train"]["seconds_per_step"]),
        "sample": _fmt_s(r["sample"]["seconds_per_step"]) if r.get("sample") else "-",
        "mem_train": _fmt_mem(mem),
        "mem_sample": _fmt_mem(r["sample"]["memory"]) if r.get("sample") else "-",
        "measure": mem["measure"],
        "overhead": f"{ov['ratio']:.2f}" if ov else "-",
    }


COLUMNS = [
    ("model", "Model"),
    ("size", "Frames x H x W -> latent (video tokens)"),
    ("device", "Device"),
    ("train", "Train s/step"),
    ("sample", "Sample s/step (CFG)"),
    ("mem_train", "Train peak MiB (+growth)"),
    ("mem_sample", "Sample peak MiB (+growth)"),
    ("measure", "Memory measure"),
    ("overhead", "Trainer / bare loop"),
]


def print_table(r: dict[str, Any]) -> None:
    row = summary_row(r)
    width = max(len(h) for _, h in COLUMNS)
    for key, head in COLUMNS:
        print(f"{head:<{width}}  {row[key]}")
    ov = r.get("overhead")
    if ov:
        print(f"{'':<{width}}  motiontune {ov['motiontune_seconds_per_step']:.4g} s/step, bare {ov['bare_seconds_per_step']:.4g} s/step")
    for key, label in (("overhead_two_stage", "two-stage"), ("overhead_motiondirector", "motiondirector")):
        ov = r.get(key)
        if ov:
            print(f"{'Trainer / bare loop (' + label + ')':<{width}}  {ov['ratio']:.2f}")
            print(f"{'':<{width}}  motiontune {ov['motiontune_seconds_per_step']:.4g} s/step, bare {ov['bare_seconds_per_step']:.4g} s/step")


def _row_key(r: dict[str, Any]) -> str:
    s = r["source"]
    z = r["size"]
    m = r["machine"]
    threads = f"|{m['torch_threads']}t" if m["device"] == "cpu" else ""
    return f"{s['kind']}:{s['name']}|{z['num_frames']}x{z['height']}x{z['width']}|{m['device']}|{r['settings']['dtype']}{threads}"


def _compact(r: dict[str, Any]) -> dict[str, Any]:
    """What a stored row keeps (enough to re-render the table)."""
    keep = {k: r[k] for k in ("source", "size", "machine", "settings", "date", "command")}
    keep["source"] = {k: v for k, v in r["source"].items() if k != "folder"}  # a temporary folder
    keep["train"] = {"seconds_per_step": r["train"]["seconds_per_step"], "memory": r["train"]["memory"]}
    keep["sample"] = ({"seconds_per_step": r["sample"]["seconds_per_step"], "memory": r["sample"]["memory"]}
                      if r.get("sample") else None)
    keep["overhead"] = ({k: r["overhead"][k] for k in ("ratio", "motiontune_seconds_per_step", "bare_seconds_per_step")}
                        if r.get("overhead") else None)
    keep["key"] = _row_key(r)
    return keep


def render_block(rows: list[dict[str, Any]]) -> str:
    lines = [TABLE_BEGIN, ""]
    lines.append("| # | " + " | ".join(h for _, h in COLUMNS) + " |")
    lines.append("|---|" + "|".join("---" for _ in COLUMNS) + "|")
    for i, r in enumerate(rows, 1):
        row = summary_row(r)
        lines.append(f"| {i} | " + " | ".join(row[k] for k, _ in COLUMNS) + " |")
    lines += ["", "Commands, dates and machines of the rows:", ""]
    for i, r in enumerate(rows, 1):
        m = r["machine"]
        load = f", load average {m['load_average'][0]:g}" if m.get("load_average") else ""
        lines.append(
            f"{i}. `{r['command']}` — {r['date']}; {m['device_name']}, {m['cpu_count']} CPUs "
            f"({m['torch_threads']} torch thread{'s' if m['torch_threads'] != 1 else ''}{load}), "
            f"torch {m['torch']}, diffusers {m['diffusers']}"
        )
    stored = ",\n".join(json.dumps(r, separators=(",", ":"), sort_keys=True) for r in rows)
    # "--" may not appear inside an HTML comment: written as "-\u002d", which JSON reads back as "--"
    lines += ["", ROWS_PREFIX + "[\n" + stored.replace("--", "-\\u002d") + "\n] -->", TABLE_END]
    return "\n".join(lines)


def append_results(path: str, result: dict[str, Any]) -> None:
    """Write or replace this result's row in the table of the "Speed and memory" section."""
    text = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    if not text.strip():
        text = "# Results\n"
    rows: list[dict[str, Any]] = []
    block = re.search(re.escape(TABLE_BEGIN) + r".*?" + re.escape(TABLE_END), text, flags=re.S)
    if block:
        found = re.search(re.escape(ROWS_PREFIX) + r"(.*?) -->", block.group(0), flags=re.S)
        if found:
            rows = json.loads(found.group(1))
    new = _compact(result)
    rows = [r for r in rows if r.get("key") != new["key"]] + [new]
    rendered = render_block(rows)
    if block:
        text = text[: block.start()] + rendered + text[block.end():]
    else:
        sec = re.search(r"^" + re.escape(SECTION) + r"[ \t]*$", text, flags=re.M)
        if sec:  # put the table at the end of the existing section
            nxt = re.search(r"^## ", text[sec.end():], flags=re.M)
            at = sec.end() + (nxt.start() if nxt else len(text) - sec.end())
            head, tail = text[:at].rstrip("\n"), text[at:]
            text = head + "\n\n" + rendered + "\n" + ("\n" + tail if tail else "")
        else:
            text = text.rstrip("\n") + "\n\n" + SECTION + "\n\n" + rendered + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--backbone", help="alias, hub id, local diffusers folder or 'toy' (as load_backbone takes)")
    src.add_argument("--tiny", metavar="FAMILY", help="the tiny random configuration of FAMILY (built into a temp folder)")
    src.add_argument("--random-config", metavar="NAME", help=f"full-size architecture with random weights, denoiser only: {', '.join(RANDOM_CONFIGS)}")
    p.add_argument("--family", help="backbone family, for a bare hub id given to --backbone")
    p.add_argument("--num-frames", type=int, default=9)
    p.add_argument("--height", type=int, default=32)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps (the median is reported)")
    p.add_argument("--sample-steps", type=int, default=5, help="num_inference_steps of the timed sampling call")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up training steps")
    p.add_argument("--sample-warmup", type=int, default=None, help="steps of an untimed warm-up sampling call (default: --warmup)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="weights and activations dtype")
    p.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"), help="the Trainer's autocast (GPU)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--guidance", type=float, default=None, help="CFG scale for sampling (default: the backbone's)")
    p.add_argument("--no-sample", action="store_true", help="skip the sampling measurement")
    p.add_argument("--overhead", action="store_true", help="also time the lora recipe's Trainer against a bare hand-written loop")
    p.add_argument("--overhead-two-stage", action="store_true",
                   help="the same for a two-stage recipe (stage 'spatial' then 'temporal', one adapter and AdamW each)")
    p.add_argument("--overhead-motiondirector", action="store_true",
                   help="the same for the motiondirector recipe (spatial_dropout=0: a one-frame and a clip pass every step)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--output-json", metavar="PATH", help="write the full result as JSON")
    p.add_argument("--append-results", metavar="PATH", help="write/replace this row in the 'Speed and memory' table of PATH (docs/RESULTS.md)")
    return p


def _quiet() -> None:
    with contextlib.suppress(Exception):
        import diffusers

        diffusers.utils.logging.disable_progress_bar()
        diffusers.utils.logging.set_verbosity_error()
    with contextlib.suppress(Exception):
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.sample_warmup is None:
        args.sample_warmup = args.warmup
    if args.train_steps < 1 or args.sample_steps < 1 or args.warmup < 0 or args.sample_warmup < 0:
        raise SystemExit("--train-steps and --sample-steps must be >= 1, --warmup and --sample-warmup >= 0")
    if args.overhead_two_stage and args.train_steps < 2:
        raise SystemExit("--overhead-two-stage needs --train-steps >= 2 (the stage switch lies inside the timed steps)")
    if args.overhead_motiondirector and args.random_config:
        raise SystemExit("--overhead-motiondirector needs reference pixels (its spatial pass draws single frames); "
                         "--random-config gives latents only")
    previous_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, argv)
    finally:
        torch.set_num_threads(previous_threads)


def _run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    _quiet()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[args.dtype]
    from motiontune.recipes import make_recipe

    started = _dt.datetime.now().astimezone()
    machine = machine_info(device)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="motiontune-speed-") as workdir:
        t0 = time.perf_counter()
        spec, source = load_source(args, device, dtype, workdir)
        load_seconds = time.perf_counter() - t0
        _log(args, f"loaded {source['kind']} {source['name']} in {load_seconds:.1f} s")
        denoiser_only = source["kind"] == "random-config"
        if denoiser_only:
            notes.append("random weights, denoiser only: no text encoder and no VAE are built or timed; training uses "
                         "random latents and random text embeddings of the published shapes")
        latent_shape = spec.latent_shape(args.num_frames, args.height, args.width)
        layout = spec.token_layout(latent_shape)
        denoiser_params = sum(p.numel() for p in spec.denoiser.parameters())
        recipe = make_recipe("lora", rank=args.lora_rank, alpha=float(args.lora_rank))
        data = make_training_data(spec, latent_shape, args.num_frames, args.height, args.width, args.seed, denoiser_only)
        trainer, train = measure_training(spec, recipe, data, args, device, os.path.join(workdir, "run"))
        sample = None if args.no_sample else measure_sampling(spec, recipe, args, device)
        lora_attention = list(recipe.config.attention)
        del trainer, recipe, spec  # each overhead case loads its own two copies
        gc.collect()

        def make_copy():
            return load_source(args, device, dtype, workdir)[0]

        overheads: dict[str, Any] = {}
        for key, measure in OVERHEAD_CASES.items():
            if getattr(args, key):
                overheads[key] = measure(make_copy, data, args, device, os.path.join(workdir, key))
                gc.collect()
    result: dict[str, Any] = {
        "command": "python benchmarks/speed.py " + shlex.join(argv),
        "date": started.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine,
        "source": source,
        "size": {"num_frames": args.num_frames, "height": args.height, "width": args.width,
                 "latent_shape": list(latent_shape), "video_tokens": layout.video_tokens},
        "settings": {"dtype": args.dtype, "mixed_precision": args.mixed_precision,
                     "gradient_checkpointing": args.gradient_checkpointing, "recipe": "lora",
                     "lora_rank": args.lora_rank, "lora_attention": lora_attention,
                     "batch_size": 1, "warmup": args.warmup, "train_steps": args.train_steps,
                     "sample_warmup": args.sample_warmup, "sample_steps": args.sample_steps, "denoiser_parameters": denoiser_params,
                     "load_seconds": round(load_seconds, 2)},
        "train": train,
        "sample": sample,
        "overhead": overheads.get("overhead"),
        **{k: v for k, v in overheads.items() if k != "overhead"},
        "notes": notes,
    }
    with contextlib.suppress(OSError, AttributeError):
        result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print_table(result)
    if args.output_json:
        os.makedirs(os.path.dirname(os.path.abspath(args.output_json)), exist_ok=True)
        with open(args.output_json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    if args.append_results:
        append_results(args.append_results, result)
    return result


if __name__ == "__main__":
    from motiontune.errors import MotiontuneError

    try:
        main()
    except MotiontuneError as exc:
        raise SystemExit(f"error: {exc}") from None
