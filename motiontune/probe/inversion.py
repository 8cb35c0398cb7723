"""Deterministic inversion of a video into the noise trajectory that regenerates it.

* DDPM-style models (eps or v prediction: ModelScope/ZeroScope, Latte, CogVideoX): DDIM
  inversion (eta 0) on the schedule's ``alphas_cumprod``. Step k of the DDIM sampler moves the
  state from timestep ``t_k`` to ``p_k = t_k - T / n`` with the prediction at ``(x_{t_k}, t_k)``;
  inversion runs the same steps backwards, from ``p_k`` up to ``t_k``, evaluating the model on
  the current latent at the destination timestep ``t_k`` (the usual approximation
  ``eps(x_{p_k}, t_k) ~ eps(x_{t_k}, t_k)`` of DDIM inversion; paper eq. 2, as in null-text
  inversion):  ``x_{t_k} = sqrt(a_{t_k}) x0_hat + sqrt(1 - a_{t_k}) eps_hat`` with ``x0_hat``
  and ``eps_hat`` recovered from the model output at ``a_{p_k}``.
* Flow-matching models (Wan, HunyuanVideo, the toy model): Euler integration of the predicted
  velocity from sigma = 0 to sigma = 1 on the Euler sampler's sigma grid,
  ``x_{s_k} = x_{s_{k+1}} + (s_k - s_{k+1}) v(x_{s_{k+1}}, t_k)``: the exact reverse of an Euler
  sampling step up to the same approximation.

Resampling uses the shared sampling loop (:func:`motiontune.diffusion.sampling.denoise`) with
the matching deterministic sampler from :func:`probe_scheduler` (DDIM with eta 0, or flow
Euler), so the inverted trajectory and the resampling visit the same timesteps. Inversion uses
the caption with guidance 1 by default (classifier-free guidance breaks the reversibility).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from motiontune.backbones.base import cat_conditioning
from motiontune.diffusion.sampling import SamplingConfig, denoise
from motiontune.errors import ConfigError
from motiontune.hooks.call import DenoiserCall, denoiser_call, eval_mode
from motiontune.utils.progress import progress as progress_bar

if TYPE_CHECKING:
    from motiontune.backbones.base import BackboneSpec
    from motiontune.recipes.base import Recipe

CaptionAt = str | Callable[[float], str]


@dataclass
class InversionResult:
    """The inverted trajectory of one video.

    ``timesteps`` are the sampler's timesteps in sampling order (high noise first, native units);
    ``latents[i]`` is the state at ``timesteps[i]``, i.e. the input of sampling step ``i``, for
    ``i < len(timesteps)``; ``latents[-1]`` is the clean latent of the input video. So
    ``len(latents) == len(timesteps) + 1`` and ``latents[0]`` is the fully inverted noise.
    """

    timesteps: list[float]
    latents: list[torch.Tensor]
    caption: str
    guidance: float = 1.0
    negative_prompt: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def noise(self) -> torch.Tensor:
        """The fully inverted latent (the state at the first, noisiest timestep)."""
        return self.latents[0]

    @property
    def clean(self) -> torch.Tensor:
        return self.latents[-1]

    def step_index(self, tau: float) -> int:
        """Index of the first sampling step whose timestep is below ``tau`` (``num_steps`` if none)."""
        for i, t in enumerate(self.timesteps):
            if t < tau:
                return i
        return self.num_steps

    def latent_at(self, tau: float) -> torch.Tensor:
        """The inverted state from which sampling continues below ``tau``."""
        return self.latents[self.step_index(tau)]


def probe_scheduler(spec: "BackboneSpec") -> Any:
    """A fresh deterministic sampler for inversion and resampling.

    DDIM (eta 0) on the backbone's ``alphas_cumprod`` for DDPM-style models (the backbone's own
    scheduler class when it already is a DDIM one, e.g. CogVideoX's), flow-matching Euler with
    the backbone's shift for flow models.
    """
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

    current = spec.scheduler
    name = type(current).__name__
    cfg = current.config
    if spec.schedule.prediction_type == "flow":
        if name == "FlowMatchEulerDiscreteScheduler":
            return spec.fresh_scheduler()
        shift = cfg.get("flow_shift", None) or cfg.get("shift", None) or 1.0
        return FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=int(cfg.get("num_train_timesteps", 1000)), shift=float(shift)
        )
    if "DDIM" in name and "Inverse" not in name:
        scheduler = spec.fresh_scheduler()
    else:
        scheduler = DDIMScheduler.from_config(cfg)
    reference = spec.schedule.alphas_cumprod.float()
    if scheduler.alphas_cumprod.shape != reference.shape or not torch.allclose(scheduler.alphas_cumprod.float(), reference):
        # e.g. a DPM-Solver config with an SNR shift the DDIM class does not know about
        scheduler.alphas_cumprod = reference.clone()
        if not scheduler.config.get("set_alpha_to_one", True):
            scheduler.final_alpha_cumprod = reference[0].clone()
    return scheduler


def _timesteps(scheduler: Any, steps: int, device: torch.device) -> torch.Tensor:
    scheduler.set_timesteps(steps, device=device)
    return scheduler.timesteps


def encode(spec: "BackboneSpec", pixels: torch.Tensor) -> torch.Tensor:
    """Pixels (3, F, H, W) or (1, 3, F, H, W) in [-1, 1] -> normalised latents (1, C, f, h, w) (posterior mode)."""
    if pixels.ndim == 4:
        pixels = pixels.unsqueeze(0)
    with torch.no_grad():
        return spec.encode_video(pixels.to(spec.device)).float()


def _conditions(spec: "BackboneSpec", caption: str, guidance: float, negative_prompt: str, batch: int):
    cond = spec.encode_prompt([caption] * batch)
    uncond = spec.encode_prompt([negative_prompt] * batch) if guidance != 1.0 else None
    return cond, uncond


def _model_output(spec, x, t, cond, uncond, guidance, recipe=None):
    tt = t.expand(x.shape[0])
    if recipe is not None:
        recipe.apply_schedule(float(t))
    if uncond is None:
        return denoiser_call(spec, recipe, x, tt, cond, DenoiserCall("probe", tt, tuple(x.shape))).float()
    t2 = t.expand(2 * x.shape[0])
    out = denoiser_call(spec, recipe, torch.cat([x, x]), t2, cat_conditioning([uncond, cond]),
                        DenoiserCall("probe", t2, (2 * x.shape[0], *x.shape[1:]), uncond_batch=x.shape[0])).float()
    out_u, out_c = out.chunk(2)
    return out_u + guidance * (out_c - out_u)


@torch.no_grad()
def invert(
    spec: "BackboneSpec",
    latents: torch.Tensor,
    caption: str,
    num_steps: int,
    guidance: float = 1.0,
    negative_prompt: str = "",
    progress: bool = False,
    recipe: "Recipe | None" = None,
) -> InversionResult:
    """Invert clean latents (1, C, f, h, w) with ``caption`` over the ``num_steps`` sampling grid
    (with ``recipe``'s adapters, scale schedule and hooks when given; the base model otherwise)."""
    if num_steps < 1:
        raise ConfigError(f"the number of inversion steps must be >= 1 (got {num_steps})")
    scheduler = probe_scheduler(spec)
    timesteps = _timesteps(scheduler, num_steps, spec.device)
    n = len(timesteps)
    cond, uncond = _conditions(spec, caption, guidance, negative_prompt, latents.shape[0])
    x = latents.float().to(spec.device)
    states = [x]
    flow = spec.schedule.prediction_type == "flow"
    if flow:
        sigmas = scheduler.sigmas.to(torch.float32)
    else:
        alphas = scheduler.alphas_cumprod.to(torch.float64)
        final = float(scheduler.final_alpha_cumprod)
        stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        prediction = spec.schedule.prediction_type

        def alpha(step: int) -> float:
            return float(alphas[step]) if step >= 0 else final

    for k in progress_bar(range(n - 1, -1, -1), desc="inverting", disable=not progress, leave=False):
        t = timesteps[k]
        with eval_mode(spec.denoiser):
            out = _model_output(spec, x, t, cond, uncond, guidance, recipe)
        if flow:
            x = x + (sigmas[k] - sigmas[k + 1]).to(x.device) * out
        else:
            a_cur, a_next = alpha(int(t) - stride), alpha(int(t))
            sa, s1 = math.sqrt(a_cur), math.sqrt(1.0 - a_cur)
            if prediction == "epsilon":
                eps = out
                x0 = (x - s1 * eps) / sa
            else:  # v_prediction
                x0 = sa * x - s1 * out
                eps = s1 * x + sa * out
            x = math.sqrt(a_next) * x0 + math.sqrt(1.0 - a_next) * eps
        states.append(x)
    if recipe is not None:
        recipe.reset_schedule()
    states.reverse()
    return InversionResult(
        timesteps=[float(t) for t in timesteps],
        latents=states,
        caption=caption,
        guidance=guidance,
        negative_prompt=negative_prompt,
        info={"sampler": type(scheduler).__name__, "method": "flow euler" if flow else "ddim"},
    )


@torch.no_grad()
def resample(
    spec: "BackboneSpec",
    inversion: InversionResult,
    caption: CaptionAt,
    guidance: float = 1.0,
    negative_prompt: str = "",
    start_step: int = 0,
    latents: torch.Tensor | None = None,
    callback: Callable[[int, float, torch.Tensor], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Denoise along the inversion's grid and return clean latents.

    ``caption`` is one caption, or a function of the native timestep returning the caption to
    use at that step. Sampling starts at step ``start_step`` from ``latents`` (default: the
    inverted state there, ``inversion.latents[start_step]``).
    """
    scheduler = probe_scheduler(spec)
    grid = [float(t) for t in _timesteps(scheduler, inversion.num_steps, spec.device)]
    if grid != inversion.timesteps:
        raise ConfigError("the sampler's timesteps differ from the inversion's (different backbone or step count)")
    init = inversion.latents[start_step] if latents is None else latents
    batch = init.shape[0]
    if isinstance(caption, str):
        cond, uncond = _conditions(spec, caption, guidance, negative_prompt, batch)
        cond_fn = None
    else:
        cond, uncond = _conditions(spec, caption(grid[start_step] if start_step < len(grid) else 0.0), guidance, negative_prompt, batch)

        def cond_fn(t: float) -> dict[str, torch.Tensor]:
            return spec.encode_prompt([caption(t)] * batch)

    cfg = SamplingConfig(num_inference_steps=inversion.num_steps, guidance_scale=guidance, negative_prompt=negative_prompt)
    return denoise(
        spec, init.to(spec.device), cond, uncond, cfg, progress=progress, desc="resampling", scheduler=scheduler,
        cond_fn=cond_fn, start_step=start_step, callback=callback,
    ).float()


def match_frames(video: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Pixels (B, 3, F', H, W) with F' frames picked uniformly to make ``num_frames``.

    Some VAEs decode a different count than they encoded on short clips (CogVideoX's decodes 2
    latent frames to 8 pixel frames); comparisons with the input use the frames this picks.
    """
    have = video.shape[2]
    if have == num_frames:
        return video
    index = torch.linspace(0, have - 1, num_frames).round().long()
    return video[:, :, index]


def decode(spec: "BackboneSpec", latents: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Latents -> pixels (B, 3, num_frames, H, W) in [-1, 1] on the CPU."""
    with torch.no_grad():
        return match_frames(spec.decode_latents(latents).float().cpu(), num_frames)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB between two videos in [-1, 1] (peak = the full range)."""
    if a.shape != b.shape:
        raise ConfigError(f"PSNR needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = float(((a.float().cpu() - b.float().cpu()) / 2).pow(2).mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


@dataclass
class Reconstruction:
    """Inversion followed by resampling with the original caption everywhere."""

    inversion: InversionResult
    latents: torch.Tensor
    pixels: torch.Tensor  # (1, 3, F, H, W) in [-1, 1]
    psnr: float  # reconstruction vs the input video
    vae_psnr: float  # decode(encode(input)) vs the input: the ceiling the VAE allows
    states: list[torch.Tensor]  # the resampling trajectory: states[i] is the input of sampling step i


@torch.no_grad()
def reconstruct(
    spec: "BackboneSpec",
    pixels: torch.Tensor,
    caption: str,
    num_steps: int,
    guidance: float = 1.0,
    inversion_guidance: float = 1.0,
    negative_prompt: str = "",
    progress: bool = False,
) -> Reconstruction:
    """Encode ``pixels`` (3, F, H, W) in [-1, 1], invert with ``caption``, resample with it; report PSNR."""
    if pixels.ndim == 4:
        pixels = pixels.unsqueeze(0)
    x0 = encode(spec, pixels)
    inversion = invert(spec, x0, caption, num_steps, inversion_guidance, negative_prompt, progress)
    states = [inversion.latents[0]]
    latents = resample(
        spec, inversion, caption, guidance, negative_prompt, callback=lambda i, t, z: states.append(z.float().clone()),
        progress=progress,
    )
    states = states[:-1]  # the last one is the output
    ref = pixels.float().cpu()
    out = decode(spec, latents, ref.shape[2])
    vae = decode(spec, x0, ref.shape[2])
    return Reconstruction(inversion, latents, out, psnr(out, ref), psnr(vae, ref), states)
