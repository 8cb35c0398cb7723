"""Noise schedules, training targets, timestep sampling and timestep ranges.

Every backbone speaks in its own native timestep ``t`` in ``[0, T]`` (``T = 1000``):

* DDPM-style models (ModelScope/ZeroScope, Latte, CogVideoX): integer ``t`` indexing
  ``alphas_cumprod``; ``x_t = sqrt(a) x0 + sqrt(1 - a) eps``; targets ``epsilon`` or
  ``v_prediction``.
* Flow-matching models (Wan2.1, HunyuanVideo, the toy model): ``t = T * sigma`` with
  ``x_t = (1 - sigma) x0 + sigma * eps`` and the velocity target ``eps - x0``; this is the
  ``t`` the diffusers pipelines pass to these models.

"Early timesteps" are high noise (t near T) in both.  A :class:`TimestepRange` is given in
native units; :func:`ddpm_to_flow_t` maps a DDPM timestep to the flow-matching ``t`` of the
same signal-to-noise ratio, so a range chosen on a DDPM model (e.g. the paper's tau = 700)
can be carried over consistently (``TimestepRange(..., unit="ddpm")``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from motiontune.errors import ConfigError

NUM_TRAIN_TIMESTEPS = 1000


def scaled_linear_alphas_cumprod(
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """The Stable Diffusion / ModelScope / ZeroScope DDPM schedule (``scaled_linear`` betas)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def ddpm_to_flow_t(t_ddpm: float, alphas_cumprod: torch.Tensor | None = None) -> float:
    """Flow-matching ``t = T * sigma`` with the same SNR as DDPM timestep ``t_ddpm``.

    DDPM SNR ``a / (1 - a)``; flow SNR ``((1 - sigma) / sigma)^2``; equal when
    ``sigma = sqrt(1 - a) / (sqrt(a) + sqrt(1 - a))``. The reference DDPM schedule defaults to
    the scaled-linear one of ModelScope/ZeroScope.
    """
    ac = scaled_linear_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod.double()
    T = len(ac)
    t = min(max(float(t_ddpm), 0.0), T - 1.0)
    lo = int(math.floor(t))
    hi = min(lo + 1, T - 1)
    a = float(ac[lo] + (ac[hi] - ac[lo]) * (t - lo))
    sigma = math.sqrt(1 - a) / (math.sqrt(a) + math.sqrt(1 - a))
    return sigma * NUM_TRAIN_TIMESTEPS


@dataclass(frozen=True)
class TimestepRange:
    """A closed range ``[low, high]`` of timesteps, in native units unless ``unit == "ddpm"``."""

    low: float = 0.0
    high: float = float(NUM_TRAIN_TIMESTEPS)
    unit: Literal["native", "ddpm"] = "native"

    def __post_init__(self) -> None:
        if not (0 <= self.low <= self.high <= NUM_TRAIN_TIMESTEPS):
            raise ConfigError(
                f"timestep range [{self.low}, {self.high}] must satisfy 0 <= low <= high <= {NUM_TRAIN_TIMESTEPS}"
            )
        if self.unit not in ("native", "ddpm"):
            raise ConfigError(f"timestep range unit must be 'native' or 'ddpm', not {self.unit!r}")

    @classmethod
    def parse(cls, value: Any) -> "TimestepRange | None":
        """Accept None, ``"700:1000"``, ``"700"`` (meaning [700, T]), ``[a, b]`` or a mapping."""
        if value is None or value == "" or isinstance(value, TimestepRange):
            return value
        unit = "native"
        if isinstance(value, dict):
            unit = value.get("unit", "native")
            return cls(float(value.get("low", 0)), float(value.get("high", NUM_TRAIN_TIMESTEPS)), unit)
        if isinstance(value, str):
            text = value.strip()
            if text.endswith("ddpm"):
                unit, text = "ddpm", text[: -len("ddpm")].rstrip(" @")
            parts = [p for p in text.replace(",", ":").split(":")]
            try:
                nums = [float(p) for p in parts if p.strip() != ""]
            except ValueError as exc:
                raise ConfigError(f"cannot parse timestep range {value!r}: use LOW:HIGH, e.g. 700:1000") from exc
            if len(parts) == 1 and len(nums) == 1:
                return cls(nums[0], NUM_TRAIN_TIMESTEPS, unit)
            if len(parts) == 2:
                low = float(parts[0]) if parts[0].strip() else 0.0
                high = float(parts[1]) if parts[1].strip() else float(NUM_TRAIN_TIMESTEPS)
                return cls(low, high, unit)
            raise ConfigError(f"cannot parse timestep range {value!r}: use LOW:HIGH, e.g. 700:1000")
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return cls(float(value[0]), float(value[1]))
        raise ConfigError(f"cannot parse timestep range {value!r}: use LOW:HIGH, e.g. 700:1000")

    def native(self, schedule: "NoiseSchedule") -> tuple[float, float]:
        """The range in the schedule's native units."""
        if self.unit == "ddpm" and schedule.prediction_type == "flow":
            # the ends of the DDPM scale are the ends of the flow scale (pure data, pure noise)
            low = 0.0 if self.low <= 0 else ddpm_to_flow_t(self.low)
            high = float(NUM_TRAIN_TIMESTEPS) if self.high >= NUM_TRAIN_TIMESTEPS - 1 else ddpm_to_flow_t(self.high)
            return low, high
        return self.low, self.high

    def contains(self, t: float, schedule: "NoiseSchedule") -> bool:
        low, high = self.native(schedule)
        return low <= float(t) <= high

    def __str__(self) -> str:
        suffix = " (ddpm)" if self.unit == "ddpm" else ""
        return f"[{self.low:g}, {self.high:g}]{suffix}"


class NoiseSchedule:
    """Forward process, training target and x0 recovery for one family of models."""

    prediction_type: str = ""
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict_x0(self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def target_for(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model output whose x0 estimate (:meth:`predict_x0`) from ``x_t`` is ``x0``: the
        inverse of ``predict_x0``. Equal to :meth:`target` when ``x_t`` was made from ``x0``; used
        when the noisy input was made from another clip than the one to be produced."""
        raise NotImplementedError

    def sample_timesteps(
        self,
        batch: int,
        generator: torch.Generator | None = None,
        distribution: str = "uniform",
        trange: TimestepRange | None = None,
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """Training timesteps in native units, restricted to ``trange``.

        ``uniform`` is uniform over the range; ``logit_normal`` draws ``sigmoid(N(m, s))`` in
        (0, 1) and maps it linearly onto the range.
        """
        if distribution == "uniform":
            u = torch.rand(batch, generator=generator, dtype=torch.float64)
        elif distribution == "logit_normal":
            u = torch.sigmoid(torch.randn(batch, generator=generator, dtype=torch.float64) * logit_std + logit_mean)
        else:
            raise ConfigError(f"unknown timestep distribution {distribution!r}; use 'uniform' or 'logit_normal'")
        u = self._shift(u)
        low, high = trange.native(self) if trange is not None else (0.0, float(self.num_train_timesteps))
        return self._to_timesteps(low + (high - low) * u).to(device)

    def _shift(self, u: torch.Tensor) -> torch.Tensor:
        return u

    def _to_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.device, torch.float32).view(-1, *([1] * (like.ndim - 1)))


class FlowMatchSchedule(NoiseSchedule):
    """Rectified flow: ``x_t = (1 - s) x0 + s eps``, ``s = t / T``; target ``eps - x0``.

    ``shift`` (training only) warps uniform draws towards high noise like the samplers'
    ``shift``/``flow_shift``: ``s' = shift s / (1 + (shift - 1) s)``.
    """

    prediction_type = "flow"

    def __init__(self, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, shift: float = 1.0):
        self.num_train_timesteps = num_train_timesteps
        self.shift = shift

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return t.float() / self.num_train_timesteps

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = _bcast(self.sigma(t), x0)
        return (1 - s) * x0 + s * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return noise - x0

    def predict_x0(self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x_t - _bcast(self.sigma(t), x_t) * output

    def predict_noise(self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x_t + (1 - _bcast(self.sigma(t), x_t)) * output

    def target_for(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if bool((t <= 0).any()):
            raise ConfigError("target_for needs noise levels above 0")
        return (x_t - x0) / _bcast(self.sigma(t), x_t)

    def _shift(self, u: torch.Tensor) -> torch.Tensor:
        if self.shift == 1.0:
            return u
        return self.shift * u / (1 + (self.shift - 1) * u)

    def _to_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        return t.float()


class DDPMSchedule(NoiseSchedule):
    """Discrete DDPM forward process over ``alphas_cumprod`` with an eps or v target."""

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str = "epsilon"):
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(f"unsupported prediction type {prediction_type!r}")
        self.alphas_cumprod = alphas_cumprod.double().cpu()
        self.num_train_timesteps = len(alphas_cumprod)
        self.prediction_type = prediction_type

    def _coeffs(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = t.long().clamp(0, self.num_train_timesteps - 1).cpu()
        a = self.alphas_cumprod[idx]
        return _bcast(a.sqrt(), like), _bcast((1 - a).sqrt(), like)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sa, s1 = self._coeffs(t, x0)
        return sa * x0 + s1 * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return noise
        sa, s1 = self._coeffs(t, x0)
        return sa * noise - s1 * x0

    def predict_x0(self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sa, s1 = self._coeffs(t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - s1 * output) / sa
        return sa * x_t - s1 * output

    def predict_noise(self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sa, s1 = self._coeffs(t, x_t)
        if self.prediction_type == "epsilon":
            return output
        return s1 * x_t + sa * output

    def target_for(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sa, s1 = self._coeffs(t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - sa * x0) / s1
        return (sa * x_t - x0) / s1

    def _to_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        return t.round().clamp(0, self.num_train_timesteps - 1).long()


def is_flow_scheduler(scheduler: Any) -> bool:
    cfg = scheduler.config
    if type(scheduler).__name__.startswith("FlowMatch"):
        return True
    return bool(cfg.get("use_flow_sigmas", False)) or cfg.get("prediction_type") == "flow_prediction"


def make_schedule(scheduler: Any, train_shift: float = 1.0) -> NoiseSchedule:
    """The training-side schedule matching a diffusers scheduler."""
    cfg = scheduler.config
    T = int(cfg.get("num_train_timesteps", NUM_TRAIN_TIMESTEPS))
    if is_flow_scheduler(scheduler):
        return FlowMatchSchedule(T, shift=train_shift)
    ac = getattr(scheduler, "alphas_cumprod", None)
    if ac is None:
        raise ConfigError(f"scheduler {type(scheduler).__name__} has neither flow sigmas nor alphas_cumprod")
    return DDPMSchedule(torch.as_tensor(ac), prediction_type=cfg.get("prediction_type", "epsilon"))
