"""The sampling loop shared by every backbone and recipe.

Classifier-free guidance on the backbone's own scheduler, a per-timestep adapter schedule
(``recipe.apply_schedule(t)`` sets ``recipe.adapter_scale(t)``, or one scale per named adapter,
before every denoiser call, so an adapter can act on part of the trajectory only), the recipe's
conditioning edit and forward context around every call (:mod:`motiontune.hooks.call`), one seed per prompt (a prompt's video does not depend on which
other prompts share the call), and several prompts per call.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from motiontune.backbones.base import cat_conditioning
from motiontune.checks import MAX_BATCH, MAX_GUIDANCE, MAX_SAMPLING_STEPS, MAX_SEED, MAX_SIZE, number
from motiontune.errors import ConfigError
from motiontune.hooks.call import DenoiserCall, denoiser_call, eval_mode
from motiontune.utils.progress import progress as progress_bar

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec
    from motiontune.recipes.base import Recipe


@dataclass
class SamplingConfig:
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    negative_prompt: str = ""
    seed: int = 0
    #: how many prompts go through the denoiser together
    batch_size: int = 4

    def __post_init__(self) -> None:
        # None: the backbone's (or the adapter's) default, filled in by resolved()
        self.num_inference_steps = number("num_inference_steps (--steps)", self.num_inference_steps, 1, MAX_SAMPLING_STEPS,
                                          integer=True, optional=True)
        self.guidance_scale = number("guidance_scale (--guidance)", self.guidance_scale, 0, MAX_GUIDANCE, optional=True)
        for name in ("num_frames", "height", "width"):
            setattr(self, name, number(name, getattr(self, name), 1, MAX_SIZE, integer=True, optional=True))
        self.seed = number("seed", self.seed, 0, MAX_SEED, integer=True)
        self.batch_size = number("batch_size", self.batch_size, 1, MAX_BATCH, integer=True)

    def resolved(self, spec: "BackboneSpec") -> "SamplingConfig":
        f, h, w = spec.default_size
        out = SamplingConfig(
            num_inference_steps=self.num_inference_steps or spec.default_steps,
            guidance_scale=spec.default_guidance if self.guidance_scale is None else self.guidance_scale,
            num_frames=self.num_frames or f,
            height=self.height or h,
            width=self.width or w,
            negative_prompt=self.negative_prompt,
            seed=self.seed,
            batch_size=self.batch_size,
        )
        if out.num_inference_steps < 1:
            raise ConfigError(f"num_inference_steps must be >= 1 (got {out.num_inference_steps})")
        if out.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 (got {out.batch_size})")
        spec.check_size(out.num_frames, out.height, out.width)
        return out


def initial_noise(spec: "BackboneSpec", cfg: SamplingConfig, n: int, seed_offset: int = 0) -> torch.Tensor:
    """Noise for ``n`` videos; video i uses seed ``cfg.seed + seed_offset + i``."""
    shape = spec.latent_shape(cfg.num_frames, cfg.height, cfg.width, batch=1)
    noise = [
        torch.randn(shape, generator=torch.Generator().manual_seed(cfg.seed + seed_offset + i), dtype=torch.float32)
        for i in range(n)
    ]
    return torch.cat(noise).to(spec.device)


def _step_kwargs(scheduler: Any, generator: torch.Generator | None) -> dict[str, Any]:
    params = inspect.signature(scheduler.step).parameters
    return {"generator": generator} if "generator" in params and generator is not None else {}


@torch.no_grad()
def denoise(
    spec: "BackboneSpec",
    latents: torch.Tensor,
    cond: dict[str, torch.Tensor],
    uncond: dict[str, torch.Tensor] | None,
    cfg: SamplingConfig,
    recipe: "Recipe | None" = None,
    scale_fn: Callable[[float], float] | None = None,
    progress: bool = True,
    desc: str = "sampling",
    scheduler: Any = None,
    timesteps_override: list[float] | None = None,
    cond_fn: Callable[[float], dict[str, torch.Tensor]] | None = None,
    start_step: int = 0,
    callback: Callable[[int, float, torch.Tensor], None] | None = None,
    phase: str = "sample",
) -> torch.Tensor:
    """Run the reverse process from ``latents`` and return clean latents.

    ``cond_fn(t)``, when given, returns the conditioning used at timestep ``t`` instead of
    ``cond`` (e.g. a caption switch over part of the trajectory). ``start_step`` skips the first
    steps of the schedule: ``latents`` are then the state at ``timesteps[start_step]`` (exact for
    single-step samplers such as DDIM and Euler; multistep ones start without their history).
    ``callback(i, t, latents)`` is called after every step with the new latents.
    """
    scheduler = scheduler or spec.fresh_scheduler()
    scheduler.set_timesteps(cfg.num_inference_steps, device=spec.device)
    timesteps = scheduler.timesteps
    if not 0 <= start_step <= len(timesteps):
        raise ConfigError(f"start_step must be in [0, {len(timesteps)}] (got {start_step})")
    if start_step:
        timesteps = timesteps[start_step:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start_step)
    else:
        latents = latents * getattr(scheduler, "init_noise_sigma", 1.0)
    guided = uncond is not None and cfg.guidance_scale is not None and cfg.guidance_scale != 1.0
    both = cat_conditioning([uncond, cond]) if guided else cond
    generator = torch.Generator().manual_seed(cfg.seed + 7919)
    extra = _step_kwargs(scheduler, generator)
    state: dict[str, Any] = {}
    # adapter dropout layers injected after loading start in training mode: sample in eval mode
    with eval_mode(spec.denoiser):
        for j, t in enumerate(progress_bar(timesteps, desc=desc, disable=not progress, leave=False)):
            i = j + start_step
            tf = float(t)
            if cond_fn is not None:
                cond = cond_fn(tf)
                both = cat_conditioning([uncond, cond]) if guided else cond
            if recipe is not None:
                recipe.apply_schedule(tf, scale_fn)
            model_in = scheduler.scale_model_input(latents, t) if hasattr(scheduler, "scale_model_input") else latents
            if guided:
                x = torch.cat([model_in, model_in])
                tt = t.expand(x.shape[0])
                out = denoiser_call(spec, recipe, x, tt, both, DenoiserCall(phase, tt, tuple(x.shape), uncond_batch=model_in.shape[0]))
                out_u, out_c = out.float().chunk(2)
                out = out_u + cfg.guidance_scale * (out_c - out_u)
            else:
                tt = t.expand(model_in.shape[0])
                out = denoiser_call(spec, recipe, model_in, tt, cond, DenoiserCall(phase, tt, tuple(model_in.shape))).float()
            latents = spec.scheduler_step(scheduler, out, t, latents, i, state, **extra)
            if callback is not None:
                callback(i, tf, latents)
    if recipe is not None:
        recipe.reset_schedule()
    return latents


@torch.no_grad()
def generate(
    spec: "BackboneSpec",
    prompts: list[str] | str,
    recipe: "Recipe | None" = None,
    config: SamplingConfig | None = None,
    progress: bool = True,
    latents: torch.Tensor | None = None,
    return_latents: bool = False,
    scale_fn: Callable[[float], float] | None = None,
    phase: str = "sample",
) -> torch.Tensor:
    """Generate one video per prompt; returns pixels (N, 3, F, H, W) in [-1, 1]."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise ConfigError("no prompts given")
    cfg = (config or SamplingConfig()).resolved(spec)
    outs = []
    for start in range(0, len(prompts), cfg.batch_size):
        chunk = prompts[start : start + cfg.batch_size]
        cond = spec.encode_prompt(chunk)
        uncond = spec.encode_prompt([cfg.negative_prompt] * len(chunk)) if cfg.guidance_scale != 1.0 else None
        init = latents[start : start + len(chunk)] if latents is not None else initial_noise(spec, cfg, len(chunk), start)
        desc = f"sampling {start + 1}-{start + len(chunk)}/{len(prompts)}"
        z = denoise(spec, init.to(spec.device), cond, uncond, cfg, recipe, scale_fn, progress, desc, phase=phase)
        outs.append(z if return_latents else spec.decode_latents(z).float().cpu())
    return torch.cat(outs)
