"""The motion vocabulary of the toy world as functions of normalised time.

Every motion maps normalised time ``u`` in [0, 1] to an offset of the subject's centre from the
scene's anchor point and to a multiplier of the subject's size. Coordinates are normalised
image coordinates: x grows to the right, y grows downwards, the frame spans [0, 1] on both
axes. "Up" therefore means decreasing y.

A :class:`MotionParams` instance holds the per-sample jitter that makes a motion a pattern
rather than fixed pixels: spatial amplitude, temporal speed, phase and sense of rotation or
travel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from motiontune.errors import ConfigError

BASE_MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "still", "grow", "shrink")
HELDOUT_MOTIONS: tuple[str, ...] = ("orbit", "zigzag", "bounce", "figure_eight", "spiral")
MOTIONS: tuple[str, ...] = BASE_MOTIONS + HELDOUT_MOTIONS

# Nominal extents in normalised frame units (before the amplitude multiplier).
LINEAR_DISTANCE = 0.4
GROW_LOG_RATIO = float(np.log(2.0))
ORBIT_RADIUS = 0.2
ZIGZAG_WIDTH = 0.45
ZIGZAG_HEIGHT = 0.12
ZIGZAG_CYCLES = 2.0
BOUNCE_WIDTH = 0.25
BOUNCE_HEIGHT = 0.4
BOUNCE_COUNT = 2.0
EIGHT_WIDTH = 0.22
EIGHT_HEIGHT = 0.15
SPIRAL_RADIUS = 0.22
SPIRAL_TURNS = 1.25


@dataclass(frozen=True)
class MotionParams:
    """Per-sample jitter of a motion.

    amplitude: multiplier of the motion's spatial extent (distance, radius, size ratio).
    speed: multiplier of its rate (cycles per clip for periodic motions, distance for linear).
    phase: starting point within a cycle, in [0, 1); ignored by linear and size motions.
    sense: +1 or -1; direction of rotation (orbit, spiral, figure-eight) or of horizontal
        travel (zigzag, bounce); ignored by the other motions.
    """

    amplitude: float = 1.0
    speed: float = 1.0
    phase: float = 0.0
    sense: int = 1

    def __post_init__(self) -> None:
        if not self.amplitude > 0:
            raise ConfigError(f"motion amplitude must be positive, got {self.amplitude}")
        if not self.speed > 0:
            raise ConfigError(f"motion speed must be positive, got {self.speed}")
        if self.sense not in (1, -1):
            raise ConfigError(f"motion sense must be +1 or -1, got {self.sense}")


Path = tuple[np.ndarray, np.ndarray]


def _linear(dx: float, dy: float) -> Callable[[np.ndarray, MotionParams], Path]:
    def path(u: np.ndarray, p: MotionParams) -> Path:
        dist = LINEAR_DISTANCE * p.amplitude * p.speed
        t = u - 0.5
        return np.stack([dx * dist * t, dy * dist * t], axis=-1), np.ones_like(u)

    return path


def _still(u: np.ndarray, p: MotionParams) -> Path:
    return np.zeros(u.shape + (2,)), np.ones_like(u)


def _size(sign: float) -> Callable[[np.ndarray, MotionParams], Path]:
    def path(u: np.ndarray, p: MotionParams) -> Path:
        log_ratio = GROW_LOG_RATIO * p.amplitude * p.speed
        return np.zeros(u.shape + (2,)), np.exp(sign * log_ratio * (u - 0.5))

    return path


def _orbit(u: np.ndarray, p: MotionParams) -> Path:
    theta = 2 * np.pi * (p.phase + p.sense * p.speed * u)
    r = ORBIT_RADIUS * p.amplitude
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1), np.ones_like(u)


def _triangle_wave(t: np.ndarray) -> np.ndarray:
    """Period-1 triangle wave in [-1, 1] with value -1 at t = 0."""
    return 1.0 - 2.0 * np.abs(2.0 * (t % 1.0) - 1.0)


def _zigzag(u: np.ndarray, p: MotionParams) -> Path:
    x = p.sense * ZIGZAG_WIDTH * p.amplitude * (u - 0.5)
    y = ZIGZAG_HEIGHT * p.amplitude * _triangle_wave(ZIGZAG_CYCLES * p.speed * u + p.phase)
    return np.stack([x, y], axis=-1), np.ones_like(u)


def _bounce(u: np.ndarray, p: MotionParams) -> Path:
    x = p.sense * BOUNCE_WIDTH * p.amplitude * (u - 0.5)
    height = BOUNCE_HEIGHT * p.amplitude
    lift = np.abs(np.sin(np.pi * (BOUNCE_COUNT * p.speed * u + p.phase)))
    return np.stack([x, height * (0.5 - lift)], axis=-1), np.ones_like(u)


def _figure_eight(u: np.ndarray, p: MotionParams) -> Path:
    t = 2 * np.pi * (p.speed * u + p.phase)
    x = p.sense * EIGHT_WIDTH * p.amplitude * np.sin(t)
    y = EIGHT_HEIGHT * p.amplitude * np.sin(2 * t)
    return np.stack([x, y], axis=-1), np.ones_like(u)


def _spiral(u: np.ndarray, p: MotionParams) -> Path:
    theta = 2 * np.pi * (p.phase + p.sense * SPIRAL_TURNS * p.speed * u)
    r = SPIRAL_RADIUS * p.amplitude * (0.15 + 0.85 * u)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=-1), np.ones_like(u)


_PATHS: dict[str, Callable[[np.ndarray, MotionParams], Path]] = {
    "left": _linear(-1.0, 0.0),
    "right": _linear(1.0, 0.0),
    "up": _linear(0.0, -1.0),
    "down": _linear(0.0, 1.0),
    "still": _still,
    "grow": _size(1.0),
    "shrink": _size(-1.0),
    "orbit": _orbit,
    "zigzag": _zigzag,
    "bounce": _bounce,
    "figure_eight": _figure_eight,
    "spiral": _spiral,
}


def check_motion(motion: str) -> str:
    """Return ``motion`` if it is a known motion name, else raise ConfigError."""
    if motion not in _PATHS:
        raise ConfigError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")
    return motion


def motion_path(motion: str, u: np.ndarray, params: MotionParams | None = None) -> Path:
    """Centre offsets (N, 2) as (x, y) and size multipliers (N,) at normalised times ``u``."""
    check_motion(motion)
    times = np.asarray(u, dtype=np.float64).reshape(-1)
    offsets, scale = _PATHS[motion](times, params or MotionParams())
    return offsets, scale


def motion_extent(motion: str, params: MotionParams | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Smallest offset (2,), largest offset (2,) and largest size multiplier over the clip."""
    offsets, scale = motion_path(motion, np.linspace(0.0, 1.0, 257), params)
    return offsets.min(axis=0), offsets.max(axis=0), float(scale.max())


# Grids searched by fit_motion for the parameters that do not enter linearly.
FIT_PHASES = tuple(np.arange(24) / 24.0)
FIT_SPEEDS = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)
# RMS distance (normalised units) from the mean position below which a track counts as still.
STILL_SPREAD = 0.02
_PERIODIC = ("orbit", "zigzag", "bounce", "figure_eight", "spiral")
# Largest unexplained share of a track's best fit (MotionFit.errors) at which a held-out motion counts
# as shown by it (heldout_motion_shown): ground-truth renders of the held-out motions leave at most about
# 0.05 unexplained by their own motion (benchmarks/toy_heldout_fit.py; docs/RESULTS.md), so twice that.
HELDOUT_FIT_MAX = 0.10


@dataclass(frozen=True)
class MotionFit:
    """The vocabulary motion that best explains a trajectory.

    params: the best grid parameters, with the fitted gain as amplitude (for linear and size
        motions the gain stands for amplitude x speed).
    errors: per candidate motion, the share of the track's energy (squared distance from its
        mean) left unexplained by its best fit, in [0, 1].
    spread: RMS distance of the track from its mean position (normalised units).
    """

    motion: str
    params: MotionParams
    errors: dict[str, float]
    spread: float


def _track(offsets: np.ndarray, log_scale: np.ndarray, size: float) -> np.ndarray:
    return np.concatenate([offsets, size * log_scale[:, None]], axis=1)


@dataclass(frozen=True)
class _ParameterGrid:
    """Motion parameters as (K, 1) columns; stands in for MotionParams so that the path
    functions evaluate K parameter sets at once on (K, N) times."""

    amplitude: np.ndarray
    speed: np.ndarray
    phase: np.ndarray
    sense: np.ndarray


def _parameter_grid(motion: str) -> _ParameterGrid:
    if motion in _PERIODIC:
        speed, phase, sense = np.meshgrid(FIT_SPEEDS, FIT_PHASES, (1, -1), indexing="ij")
    else:
        speed, phase, sense = np.ones(1), np.zeros(1), np.ones(1)
    speed, phase, sense = (np.asarray(v, dtype=np.float64).reshape(-1, 1) for v in (speed, phase, sense))
    return _ParameterGrid(np.ones_like(speed), speed, phase, sense)


def fit_motion(centers: np.ndarray, areas: np.ndarray, candidates: tuple[str, ...] = MOTIONS) -> MotionFit:
    """Fit every candidate motion to a trajectory and return the best one.

    centers: (N, 2) normalised (x, y); areas: (N,) subject area as a fraction of the frame.
    The track (x, y, s * log linear size), s = sqrt(mean area), is compared with each motion's
    path up to a free translation and a non-negative gain, searching phase, speed and sense on a
    grid for the periodic motions. "still" wins when the track's spread is below STILL_SPREAD.
    """
    for motion in candidates:
        check_motion(motion)
    centers = np.asarray(centers, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != 2 or len(areas) != len(centers) or len(areas) < 2:
        raise ConfigError("fit_motion needs (N, 2) centres and (N,) areas with N >= 2")
    size = float(np.sqrt(max(areas.mean(), 1e-8)))
    observed = _track(centers, 0.5 * np.log(np.maximum(areas, 1e-8)), size)
    observed = observed - observed.mean(axis=0)
    energy = float((observed**2).sum())
    spread = float(np.sqrt(energy / len(observed)))
    u = np.linspace(0.0, 1.0, len(observed))
    errors: dict[str, float] = {}
    best_params: dict[str, MotionParams] = {}
    for motion in candidates:
        if motion == "still":
            errors[motion], best_params[motion] = 1.0, MotionParams()
            continue
        grid = _parameter_grid(motion)
        times = np.broadcast_to(u, (len(grid.speed), len(u)))
        offsets, scale = _PATHS[motion](times, grid)
        templates = np.concatenate([offsets, size * np.log(scale)[..., None]], axis=-1)
        flat = (templates - templates.mean(axis=1, keepdims=True)).reshape(len(templates), -1)
        norms = np.maximum(np.einsum("kd,kd->k", flat, flat), 1e-12)
        dots = flat @ observed.ravel()
        gains = np.maximum(0.0, dots / norms)
        residuals = energy - 2.0 * gains * dots + gains**2 * norms  # |observed - gain * template|^2
        best = int(np.argmin(residuals))
        errors[motion] = max(0.0, float(residuals[best]) / energy) if energy > 0 else 0.0
        best_params[motion] = MotionParams(
            amplitude=max(float(gains[best]), 1e-6),
            speed=float(grid.speed[best, 0]),
            phase=float(grid.phase[best, 0]),
            sense=int(grid.sense[best, 0]),
        )
    moving = [m for m in candidates if m != "still"]
    if "still" in candidates and (spread < STILL_SPREAD or not moving):
        chosen = "still"
    else:
        chosen = min(moving, key=errors.__getitem__)
    return MotionFit(chosen, best_params[chosen], errors, spread)


def heldout_motion_shown(fit: MotionFit, max_error: float = HELDOUT_FIT_MAX) -> bool:
    """True when a held-out motion best fits the track and explains it as well as a render of that
    motion would (unexplained share at most ``max_error``): the motion shows, not just a wandering
    track that a held-out template happens to fit least badly."""
    return fit.motion in HELDOUT_MOTIONS and fit.errors[fit.motion] <= max_error
