"""Video metrics that need no learned weights: flickering, flow agreement, dynamics, smoothness.

Every metric takes videos as uint8 RGB arrays (F, H, W, 3); float arrays in [0, 1] are
accepted too (see :func:`as_uint8_video`). Definitions, ranges and conventions are written up
in docs/metrics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from motiontune.errors import ConfigError, InputError
from motiontune.evaluation.flow import (
    DENSE_FLOW_METHODS,
    DenseFlowMethod,
    dense_flow,
    good_features,
    grid_points,
    lk_step,
    mean_direction_agreement,
    resize_video,
    to_gray,
    unit_vectors,
)

# Flow vectors shorter than this many pixels count as "still" (see docs/metrics.md).
DEFAULT_MIN_MAGNITUDE = 0.1
# motion_fidelity keeps a point's track when LK tracked it in at least this share of the frames ...
MIN_TRACKED_SHARE = 0.8
# ... a step counting as tracked when LK back from the new position lands within this many pixels
FORWARD_BACKWARD_PIXELS = 2.0


def as_uint8_video(x: np.ndarray, name: str = "video") -> np.ndarray:
    """Check a video and return it as a C-contiguous uint8 array (F, H, W, 3).

    uint8 arrays pass through; float arrays must hold values in [0, 1] and are scaled by 255
    and rounded. Anything else raises :class:`InputError`.
    """
    if not isinstance(x, np.ndarray):
        raise InputError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"{name} must have shape (frames, height, width, 3), got {x.shape}")
    if min(x.shape[:3]) < 1:
        raise InputError(f"{name} has an empty dimension: shape {x.shape}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise InputError(f"{name} contains NaN or infinite values")
        if x.min() < 0.0 or x.max() > 1.0:
            raise InputError(
                f"float {name} must lie in [0, 1], got values in [{x.min():.3g}, {x.max():.3g}]"
            )
        return np.rint(x * 255.0).astype(np.uint8)
    raise InputError(f"{name} must be uint8 or float in [0, 1], got dtype {x.dtype}")


def _require_frames(video: np.ndarray, minimum: int, metric: str, name: str = "video") -> None:
    if video.shape[0] < minimum:
        raise InputError(f"{metric} needs at least {minimum} frames, {name} has {video.shape[0]}")


def _video_and_reference(
    video: np.ndarray, reference: np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Both videos checked, with equal frame counts, the video resized to the reference's size."""
    v = as_uint8_video(video, "video")
    r = as_uint8_video(reference, "reference")
    _require_frames(r, 2, metric, "reference")
    if v.shape[0] != r.shape[0]:
        raise InputError(
            f"{metric} needs equal frame counts, video has {v.shape[0]}, reference {r.shape[0]}"
        )
    return resize_video(v, r.shape[1], r.shape[2]), r


def temporal_flickering(video: np.ndarray) -> float:
    """VBench temporal flickering: (255 - mean absolute difference of adjacent frames) / 255."""
    v = as_uint8_video(video)
    _require_frames(v, 2, "temporal_flickering")
    diffs = np.abs(v[1:].astype(np.int16) - v[:-1].astype(np.int16))
    pair_mae = diffs.reshape(diffs.shape[0], -1).mean(axis=1)
    return float(np.mean((255.0 - pair_mae) / 255.0))


def flow_similarity(
    video: np.ndarray,
    reference: np.ndarray,
    grid_step: int = 8,
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
) -> float:
    """Mean cosine between the LK flow of ``video`` and of ``reference`` on a fixed grid.

    For each adjacent frame pair, the points of a grid (spacing ``grid_step`` pixels) are
    tracked one step with pyramidal Lucas-Kanade in both videos; points lost in either video
    are skipped. Flow vectors are unit-normalised; those shorter than ``min_magnitude`` pixels
    are still. A still and a moving vector score 0; points still in both videos are left out
    of the mean, and a pair whose points are all still in both scores 1. Scores are averaged
    over points, then over frame pairs. NaN when no point could be tracked in any pair.
    """
    if grid_step < 1:
        raise ConfigError(f"grid_step must be a positive number of pixels, got {grid_step}")
    v, r = _video_and_reference(video, reference, "flow_similarity")
    height, width = r.shape[1:3]
    points = grid_points(height, width, grid_step)
    if len(points) == 0:
        raise InputError(f"frames of {height}x{width} hold no point of a {grid_step}-pixel grid")
    gv = [to_gray(f) for f in v]
    gr = [to_gray(f) for f in r]
    start = points.reshape(-1, 2)
    pair_scores: list[float] = []
    for t in range(len(gr) - 1):
        moved_v, ok_v = lk_step(gv[t], gv[t + 1], points)
        moved_r, ok_r = lk_step(gr[t], gr[t + 1], points)
        valid = ok_v & ok_r
        if not valid.any():
            continue
        units_v, still_v = unit_vectors(moved_v.reshape(-1, 2)[valid] - start[valid], min_magnitude)
        units_r, still_r = unit_vectors(moved_r.reshape(-1, 2)[valid] - start[valid], min_magnitude)
        pair_scores.append(float(mean_direction_agreement(units_v, still_v, units_r, still_r)))
    return float(np.mean(pair_scores)) if pair_scores else float("nan")


@dataclass(frozen=True)
class DynamicDegree:
    """Outcome of :func:`dynamic_degree` for one video."""

    pair_magnitudes: np.ndarray  # (F-1,) mean of the top 5% flow magnitudes per frame pair
    threshold: float  # pixels; a pair moves when its magnitude is above this
    required_pairs: int  # moving pairs needed to call the video dynamic
    moving_pairs: int
    moving_fraction: float  # moving_pairs / (F - 1)
    is_dynamic: bool

    @property
    def score(self) -> float:
        """VBench's per-video value: 1.0 for a dynamic video, 0.0 otherwise."""
        return 1.0 if self.is_dynamic else 0.0


def top_magnitude_mean(flow: np.ndarray, fraction: float = 0.05) -> float:
    """Mean of the top ``fraction`` (at least one) of the magnitudes of a flow field (H, W, 2)."""
    magnitudes = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2).ravel()
    count = max(1, int(magnitudes.size * fraction))
    return float(np.partition(magnitudes, magnitudes.size - count)[-count:].mean())


def dynamic_threshold(height: int, width: int, fps: float | None = None) -> float:
    """VBench's moving-pair threshold in pixels: 6 * min(H, W) / 256, times max(1, 8 / fps) with ``fps``."""
    if fps is not None and fps <= 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    factor = 1.0 if fps is None else max(1.0, 8.0 / fps)
    return factor * 6.0 * min(height, width) / 256.0


def judge_dynamics(pair_magnitudes: np.ndarray, threshold: float) -> DynamicDegree:
    """VBench's rule on the per-pair flow magnitudes of a video of F = len(pair_magnitudes) + 1 frames.

    A pair moves when its magnitude is above ``threshold``; the video is dynamic when at least
    round(4 * F / 16) pairs (at least 1) move. Shared by :func:`dynamic_degree` (OpenCV flow)
    and ``motiontune.evaluation.learned.raft_dynamic_degree`` (RAFT flow).
    """
    magnitudes = np.asarray(pair_magnitudes, dtype=np.float64).reshape(-1)
    if magnitudes.size < 1:
        raise InputError("dynamic degree needs at least one frame pair")
    moving = int((magnitudes > threshold).sum())
    required = max(1, round(4 * (magnitudes.size + 1) / 16.0))
    return DynamicDegree(
        pair_magnitudes=magnitudes,
        threshold=threshold,
        required_pairs=required,
        moving_pairs=moving,
        moving_fraction=moving / magnitudes.size,
        is_dynamic=moving >= required,
    )


def dynamic_degree(
    video: np.ndarray, method: DenseFlowMethod = "farneback", fps: float | None = None
) -> DynamicDegree:
    """VBench dynamic degree with OpenCV dense flow instead of RAFT.

    Per adjacent pair: mean of the top 5% flow magnitudes. Threshold: 6 * min(H, W) / 256
    pixels, times max(1, 8 / fps) when ``fps`` is given. The video is dynamic when at least
    round(4 * F / 16) pairs (at least 1) exceed the threshold, F being the frame count.
    """
    if method not in DENSE_FLOW_METHODS:
        raise ConfigError(f"unknown flow method {method!r}; known: {', '.join(DENSE_FLOW_METHODS)}")
    v = as_uint8_video(video)
    _require_frames(v, 2, "dynamic_degree")
    threshold = dynamic_threshold(v.shape[1], v.shape[2], fps)
    grays = [to_gray(f) for f in v]
    magnitudes = np.array(
        [top_magnitude_mean(dense_flow(a, b, method)) for a, b in zip(grays[:-1], grays[1:])]
    )
    return judge_dynamics(magnitudes, threshold)


def _tracklet_displacements(video: np.ndarray, max_points: int) -> tuple[np.ndarray, str]:
    """Frame-to-frame displacements (N, F-1, 2) of the first-frame corners tracked in at least
    MIN_TRACKED_SHARE of the frames, and a note saying how many corners were found and kept.

    A step counts as tracked when LK succeeds, stays in the frame, and tracking back lands within
    FORWARD_BACKWARD_PIXELS of the start (LK also "succeeds" into a blank frame). A corner lost in
    a frame is looked for in the next one from where it was last seen, in the frame it was last
    seen in. Its positions in the frames where it was lost are interpolated linearly between
    those where it was tracked, and continue at its last velocity after the last one (a point
    leaving the frame).
    """
    grays = [to_gray(f) for f in video]
    points = good_features(grays[0], max_points)
    n, frames = len(points), len(grays)
    positions = np.zeros((n, frames, 2))
    tracked = np.zeros((n, frames), dtype=bool)
    positions[:, 0], tracked[:, 0] = points.reshape(-1, 2), True
    last_seen = np.zeros(n, dtype=int)
    for k in range(1, frames):
        moved, ok = points.copy(), np.zeros(n, dtype=bool)
        for j in np.unique(last_seen):  # from the frame each point was last seen in
            group = last_seen == j
            moved[group], ok[group] = lk_step(grays[j], grays[k], points[group])
            back, ok_back = lk_step(grays[k], grays[j], moved[group])
            error = np.linalg.norm((back - points[group]).reshape(-1, 2), axis=1)
            ok[group] &= ok_back & (error <= FORWARD_BACKWARD_PIXELS)
        points = np.where(ok[:, None, None], moved, points)
        last_seen[ok] = k
        positions[:, k], tracked[:, k] = points.reshape(-1, 2), ok
    keep = tracked.mean(axis=1) >= MIN_TRACKED_SHARE
    steps = np.arange(frames)
    for i in np.flatnonzero(keep & ~tracked.all(axis=1)):
        seen = steps[tracked[i]]
        positions[i] = np.stack([np.interp(steps, seen, positions[i, seen, a]) for a in (0, 1)], axis=1)
        if len(seen) > 1:  # after the last tracked frame: on at the velocity of its last tracked step
            a, b = seen[-2], seen[-1]
            velocity = (positions[i, b] - positions[i, a]) / (b - a)
            positions[i, b:] = positions[i, b] + np.outer(steps[b:] - b, velocity)
    note = (f"{keep.sum()} of {n} corners tracked in >= {MIN_TRACKED_SHARE:.0%} of its {frames} frames" if n
            else "no corner to track in its first frame")
    return np.diff(positions[keep], axis=1), note


def motion_fidelity(
    video: np.ndarray,
    reference: np.ndarray,
    max_points: int = 256,
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
) -> float:
    """DMT motion fidelity (Yatim et al.) with Shi-Tomasi corners and pyramidal LK tracks.

    Tracklets start at up to ``max_points`` corners of each video's first frame; a track is
    kept when LK tracked its point in at least MIN_TRACKED_SHARE (80%) of the frames, with the
    frames where it was lost interpolated (see docs/metrics.md). Each frame-to-frame
    displacement is unit-normalised; the similarity of two tracklets is the mean over frames of the cosine of their displacements,
    with the still-vector rule of :func:`flow_similarity` (``min_magnitude`` pixels; frames
    still in both tracklets left out; two fully still tracklets score 1). Score: half the mean
    best match of the video's tracklets among the reference's plus half the converse. NaN
    when either video keeps no tracklet (:func:`motion_fidelity_or_reason` says why).
    """
    score = motion_fidelity_or_reason(video, reference, max_points, min_magnitude)
    return float("nan") if isinstance(score, str) else score


def motion_fidelity_or_reason(
    video: np.ndarray,
    reference: np.ndarray,
    max_points: int = 256,
    min_magnitude: float = DEFAULT_MIN_MAGNITUDE,
) -> float | str:
    """:func:`motion_fidelity`, or where it is undefined, ``"n/a: "`` and the reason."""
    if max_points < 1:
        raise ConfigError(f"max_points must be at least 1, got {max_points}")
    v, r = _video_and_reference(video, reference, "motion_fidelity")
    disp_v, note_v = _tracklet_displacements(v, max_points)
    disp_r, note_r = _tracklet_displacements(r, max_points)
    if len(disp_v) == 0 or len(disp_r) == 0:
        notes = [f"{what}: {note}" for what, note, disp in (("video", note_v, disp_v), ("reference", note_r, disp_r)) if len(disp) == 0]
        return f"n/a: no point to compare ({'; '.join(notes)})"
    units_v, still_v = unit_vectors(disp_v, min_magnitude)
    units_r, still_r = unit_vectors(disp_r, min_magnitude)
    similarity = mean_direction_agreement(
        units_v[:, None], still_v[:, None], units_r[None, :], still_r[None, :]
    )  # (Nv, Nr): tracklet-to-tracklet similarity, averaged over frames
    return float(0.5 * (similarity.max(axis=1).mean() + similarity.max(axis=0).mean()))


def _interpolate_middle(
    first: np.ndarray, last: np.ndarray, method: DenseFlowMethod
) -> np.ndarray:
    """The frame halfway between two frames, by warping both halfway along dense flow.

    Uses the linear-motion approximation of the flow from the middle frame to each end:
    F(mid -> first) = (F(last -> first) - F(first -> last)) / 4, F(mid -> last) = -F(mid -> first).
    """
    g_first, g_last = to_gray(first), to_gray(last)
    forward = dense_flow(g_first, g_last, method)
    backward = dense_flow(g_last, g_first, method)
    to_first = 0.25 * (backward - forward)
    height, width = g_first.shape
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    warped_first = cv2.remap(
        first, gx + to_first[..., 0], gy + to_first[..., 1],
        interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
    )
    warped_last = cv2.remap(
        last, gx - to_first[..., 0], gy - to_first[..., 1],
        interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
    )
    return 0.5 * (warped_first.astype(np.float32) + warped_last.astype(np.float32))


def motion_smoothness(
    video: np.ndarray,
    method: DenseFlowMethod = "farneback",
    triples: Literal["odd", "all"] = "odd",
) -> float:
    """Flow-interpolation smoothness: 1 - mean |interpolated - real middle frame| / 255.

    ``triples="odd"`` follows VBench: every odd frame is predicted from its two even
    neighbours. ``triples="all"`` predicts every inner frame from its two neighbours.
    """
    if method not in DENSE_FLOW_METHODS:
        raise ConfigError(f"unknown flow method {method!r}; known: {', '.join(DENSE_FLOW_METHODS)}")
    if triples not in ("odd", "all"):
        raise ConfigError(f"triples must be 'odd' or 'all', got {triples!r}")
    v = as_uint8_video(video)
    _require_frames(v, 3, "motion_smoothness")
    step = 2 if triples == "odd" else 1
    errors = [
        float(np.abs(_interpolate_middle(v[c - 1], v[c + 1], method) - v[c]).mean())
        for c in range(1, v.shape[0] - 1, step)
    ]
    return float((255.0 - np.mean(errors)) / 255.0)
