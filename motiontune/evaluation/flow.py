"""OpenCV optical-flow and point-tracking helpers shared by the motion metrics.

Frames are uint8 RGB arrays (H, W, 3); the helpers convert to grey themselves. Flow vectors
are (dx, dy) in pixels, x to the right and y downwards.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from motiontune.errors import ConfigError

DenseFlowMethod = Literal["farneback", "dis"]
DENSE_FLOW_METHODS: tuple[str, ...] = ("farneback", "dis")

# Pyramidal Lucas-Kanade settings used by every sparse-flow metric.
LK_WINDOW = (21, 21)
LK_MAX_LEVEL = 3
LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """One uint8 RGB frame (H, W, 3) as a uint8 grey image (H, W)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def resize_video(video: np.ndarray, height: int, width: int) -> np.ndarray:
    """Every frame of a (F, H, W, 3) video resized to (height, width) with area/linear filtering."""
    if video.shape[1:3] == (height, width):
        return video
    shrinking = height * width < video.shape[1] * video.shape[2]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=interpolation) for f in video])


def dense_flow(
    prev_gray: np.ndarray, next_gray: np.ndarray, method: DenseFlowMethod = "farneback"
) -> np.ndarray:
    """Dense flow (H, W, 2) float32 from ``prev_gray`` to ``next_gray``."""
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(
            prev_gray, next_gray, None,
            pyr_scale=0.5, levels=4, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0,
        )
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(prev_gray, next_gray, None)
    known = ", ".join(DENSE_FLOW_METHODS)
    raise ConfigError(f"unknown dense flow method {method!r}; known: {known}")


def grid_points(height: int, width: int, step: int) -> np.ndarray:
    """Centres of a regular grid with spacing ``step``, as float32 (N, 1, 2) (x, y) points."""
    ys = np.arange(step / 2.0, height, step, dtype=np.float32)
    xs = np.arange(step / 2.0, width, step, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=-1).reshape(-1, 1, 2)


def good_features(gray: np.ndarray, max_points: int) -> np.ndarray:
    """Shi-Tomasi corners of a grey frame as float32 (N, 1, 2); N may be 0."""
    corners = cv2.goodFeaturesToTrack(
        gray, maxCorners=max_points, qualityLevel=0.01, minDistance=5, blockSize=7
    )
    if corners is None:
        return np.zeros((0, 1, 2), dtype=np.float32)
    return corners.astype(np.float32)


def lk_step(
    prev_gray: np.ndarray, next_gray: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pyramidal LK: where ``points`` (N, 1, 2) moved to, and a boolean (N,) "tracked" mask.

    A point counts as tracked when LK reports success and its new position lies inside the
    frame.
    """
    if len(points) == 0:
        return points.copy(), np.zeros(0, dtype=bool)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(
        prev_gray, next_gray, points, None,
        winSize=LK_WINDOW, maxLevel=LK_MAX_LEVEL, criteria=LK_CRITERIA,
    )
    h, w = prev_gray.shape
    xy = moved.reshape(-1, 2)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    ok = status.reshape(-1).astype(bool) & inside & np.isfinite(xy).all(axis=1)
    return moved, ok


def unit_vectors(vectors: np.ndarray, min_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """Vectors (..., 2) scaled to unit length, plus a mask of those shorter than ``min_norm``.

    Vectors shorter than ``min_norm`` are "still": they are returned as exact zeros.
    """
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    still = norms[..., 0] < min_norm
    safe = np.where(norms > 0, norms, 1.0)
    units = np.where(still[..., None], 0.0, vectors / safe)
    return units, still


def mean_direction_agreement(
    a_units: np.ndarray,
    a_still: np.ndarray,
    b_units: np.ndarray,
    b_still: np.ndarray,
    axis: int = -1,
) -> np.ndarray:
    """Mean cosine of two unit-vector arrays along ``axis``, ignoring entries still in both.

    ``*_units`` are (..., 2) from :func:`unit_vectors`, ``*_still`` their masks; the arrays
    broadcast. A still vector against a moving one has cosine 0. Entries where both vectors
    are still carry no motion and are left out of the mean; where every entry along ``axis``
    is still in both, the two agree completely and the result is 1.
    """
    cosines = np.sum(a_units * b_units, axis=-1)
    moving = ~(a_still & b_still)
    cosines, moving = np.broadcast_arrays(cosines, moving)
    counts = moving.sum(axis=axis)
    totals = np.where(moving, cosines, 0.0).sum(axis=axis)
    return np.where(counts > 0, totals / np.maximum(counts, 1), 1.0)
