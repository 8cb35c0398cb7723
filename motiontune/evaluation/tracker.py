"""Motion fidelity on learned point tracks (CoTracker), an optional extra like RAFT.

The metric of DMT (Yatim et al.), used for motion fidelity by the customization papers: points on
a regular grid of the first frame are tracked through the generated video and through the
reference; each track's frame-to-frame displacements are unit-normalised; the similarity of two
tracks is the mean over frames of the cosine of their displacements; the score is half the mean
best match of the video's tracks among the reference's plus half the converse. The weight-free
version in :mod:`motiontune.evaluation.metrics` (``motion_fidelity``) uses Shi-Tomasi corners and
pyramidal Lucas-Kanade; this one takes the tracks of a learned tracker the user supplies as a
TorchScript file (see docs/metrics.md for the export recipe).

The TorchScript module is called as ``module(video, queries)``: ``video`` float (1, T, 3, H, W)
in [0, 255] (CoTracker's input), ``queries`` float (1, N, 3) rows ``(frame, x, y)`` in pixels (all
from frame 0 here); it returns ``(tracks, visibility)``: tracks (1, T, N, 2) as ``(x, y)`` pixels,
visibility (1, T, N) as booleans, or as floats read as visible above 0.5.

Visibility: ``"ignore"`` (every track, its predicted positions also where the point is hidden),
``"drop"`` (only tracks visible in at least ``min_visible`` of the frames), ``"mask"`` (a step
of a pair of tracks counts only where both points are visible at both ends of the step).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from motiontune.errors import ConfigError, InputError
from motiontune.evaluation.flow import unit_vectors

Visibility = Literal["ignore", "drop", "mask"]
VISIBILITY_MODES = ("ignore", "drop", "mask")
#: grid points per side (DMT's metric script tracks a 55 x 55 grid of the first frame)
DEFAULT_GRID = 55
DEFAULT_VISIBILITY: Visibility = "ignore"
DEFAULT_MIN_VISIBLE = 0.8
#: displacements shorter than this many pixels are "still" (the rule of the LK motion_fidelity)
DEFAULT_MIN_MAGNITUDE = 0.1


def grid_queries(height: int, width: int, grid: int) -> np.ndarray:
    """(grid*grid, 3) queries ``(0, x, y)`` on a regular grid, CoTracker's layout: a margin of
    width / 64 on every side, ``grid`` points spread evenly between the margins on each axis."""
    if grid < 1:
        raise ConfigError(f"the tracking grid needs at least 1 point per side (got {grid})")
    margin = width / 64
    ys = np.linspace(margin, height - margin, grid) if grid > 1 else np.array([height / 2])
    xs = np.linspace(margin, width - margin, grid) if grid > 1 else np.array([width / 2])
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([np.zeros(yy.size), xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


class PointTracker:
    """A TorchScript point tracker (CoTracker wrapped as described in the module docstring)."""

    def __init__(self, module: torch.nn.Module, device: str = "cpu") -> None:
        self.module = module.eval().to(device)
        self.device = device

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> "PointTracker":
        from motiontune.evaluation.learned import _load_torchscript

        return cls(_load_torchscript("CoTracker", path, device), device)

    @torch.no_grad()
    def track(self, video: np.ndarray, grid: int = DEFAULT_GRID) -> tuple[np.ndarray, np.ndarray]:
        """Tracks (N, T, 2) in pixels and visibility (N, T) of the grid points of frame 0."""
        from motiontune.evaluation.metrics import as_uint8_video

        v = as_uint8_video(video)
        frames, height, width = v.shape[:3]
        queries = torch.from_numpy(grid_queries(height, width, grid))[None].to(self.device)
        x = torch.from_numpy(v).permute(0, 3, 1, 2).float()[None].to(self.device)
        out = self.module(x, queries)
        if not (isinstance(out, (tuple, list)) and len(out) >= 2):
            raise ConfigError("the point tracker must return (tracks, visibility)")
        tracks, vis = out[0], out[1]
        n = queries.shape[1]
        if tuple(tracks.shape) != (1, frames, n, 2) or tuple(vis.shape[:3]) != (1, frames, n):
            raise ConfigError(f"the point tracker returned tracks of shape {tuple(tracks.shape)} and visibility "
                              f"{tuple(vis.shape)}; expected (1, {frames}, {n}, 2) and (1, {frames}, {n})")
        visible = vis[0] if vis.dtype == torch.bool else vis[0].float() > 0.5
        if visible.dim() == 3:
            visible = visible[..., 0]
        return tracks[0].float().cpu().permute(1, 0, 2).numpy(), visible.cpu().permute(1, 0).numpy()


def _similarity(units_a, still_a, valid_a, units_b, still_b, valid_b, chunk: int = 256) -> np.ndarray:
    """(Na, Nb) mean cosine over the steps where the pair is valid and not still in both; a pair
    with no such step scores 1 when it has valid steps (all still in both), else NaN."""
    out = np.empty((len(units_a), len(units_b)))
    for s in range(0, len(units_a), chunk):
        ua, sa, va = units_a[s:s + chunk, None], still_a[s:s + chunk, None], valid_a[s:s + chunk, None]
        cos = np.sum(ua * units_b[None], axis=-1)
        valid = va & valid_b[None]
        moving = valid & ~(sa & still_b[None])
        counts = moving.sum(-1)
        totals = np.where(moving, cos, 0.0).sum(-1)
        out[s:s + chunk] = np.where(counts > 0, totals / np.maximum(counts, 1), np.where(valid.any(-1), 1.0, np.nan))
    return out


def _prepared(tracks: np.ndarray, visible: np.ndarray, visibility: str, min_visible: float, min_magnitude: float):
    disp = np.diff(tracks.astype(np.float64), axis=1)  # (N, T-1, 2)
    step_visible = visible[:, 1:] & visible[:, :-1]
    if visibility == "drop":
        keep = visible.mean(axis=1) >= min_visible
        disp, step_visible = disp[keep], step_visible[keep]
    valid = step_visible if visibility == "mask" else np.ones(disp.shape[:2], bool)
    units, still = unit_vectors(disp, min_magnitude)
    return units, still, valid


def tracker_motion_fidelity_or_reason(
    video: np.ndarray,
    reference: np.ndarray,
    tracker: PointTracker,
    grid: int = DEFAULT_GRID,
    visibility: Visibility = DEFAULT_VISIBILITY,
    min_visible: float = DEFAULT_MIN_VISIBLE,
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
) -> float | str:
    """Motion fidelity on the tracker's tracks (see the module docstring), or ``"n/a: ..."``."""
    from motiontune.evaluation.metrics import as_uint8_video

    if visibility not in VISIBILITY_MODES:
        raise ConfigError(f"visibility must be one of {', '.join(VISIBILITY_MODES)} (got {visibility!r})")
    if not 0.0 <= min_visible <= 1.0:
        raise ConfigError(f"min_visible must lie in [0, 1] (got {min_visible})")
    v, r = as_uint8_video(video), as_uint8_video(reference, "reference")
    if v.shape[0] < 2 or r.shape[0] < 2:
        raise InputError("cotracker_motion_fidelity needs at least 2 frames in the video and the reference")
    if v.shape[0] != r.shape[0]:
        raise InputError(f"cotracker_motion_fidelity needs as many frames in the video ({v.shape[0]}) as in the reference ({r.shape[0]})")
    a = _prepared(*tracker.track(v, grid), visibility, min_visible, min_magnitude)
    b = _prepared(*tracker.track(r, grid), visibility, min_visible, min_magnitude)
    if len(a[0]) == 0 or len(b[0]) == 0:
        which = " and ".join(w for w, p in (("video", a), ("reference", b)) if len(p[0]) == 0)
        return f"n/a: no track of the {which} is visible in {min_visible:.0%} of the frames"
    sim = _similarity(*a, *b)
    rows, cols = np.nanmax(np.where(np.isnan(sim), -np.inf, sim), axis=1), np.nanmax(np.where(np.isnan(sim), -np.inf, sim), axis=0)
    rows, cols = rows[np.isfinite(rows)], cols[np.isfinite(cols)]
    if len(rows) == 0 or len(cols) == 0:
        return "n/a: no pair of tracks is visible together in any step"
    return float(0.5 * (rows.mean() + cols.mean()))


def tracker_motion_fidelity(video: np.ndarray, reference: np.ndarray, tracker: PointTracker, **settings) -> float:
    """:func:`tracker_motion_fidelity_or_reason`, NaN where it is undefined."""
    score = tracker_motion_fidelity_or_reason(video, reference, tracker, **settings)
    return math.nan if isinstance(score, str) else score


__all__ = ["DEFAULT_GRID", "PointTracker", "VISIBILITY_MODES", "grid_queries", "tracker_motion_fidelity",
           "tracker_motion_fidelity_or_reason"]
