"""Rendering of toy-world scenes to frames, their ground truth, and thin video IO.

Frames are rendered on a canvas ``SUPERSAMPLE`` times larger than the output and box-averaged
down, so edges are anti-aliased and every pixel holds the exact coverage-weighted mix of
subject and background colour. A pixel (row i, column j) covers the normalised square
[j/W, (j+1)/W] x [i/H, (i+1)/H]; its centre is at ((j + 0.5)/W, (i + 0.5)/H).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from motiontune.errors import ConfigError, InputError
from motiontune.toyworld.motions import motion_path
from motiontune.toyworld.world import (
    BACKGROUND_RGB,
    CHECKER_CELLS,
    COLOR_RGB,
    SHAPE_AREA,
    SHAPE_WIDTH,
    SHAPES,
    SceneSpec,
)

if TYPE_CHECKING:  # torch is imported where a tensor is made: the toy world's commands stay light
    import torch

SUPERSAMPLE = 4
DEFAULT_FRAMES = 17
DEFAULT_SIZE = 32
DEFAULT_FPS = 8


@dataclass(frozen=True)
class GroundTruth:
    """The true subject geometry per frame.

    centers: (F, 2) area centroid as normalised (x, y).
    sizes: (F,) subject size (diameter of the circle of equal area) as a fraction of
        min(height, width).
    widths: (F,) bounding-box width of the subject, same unit.
    areas: (F,) subject area as a fraction of the frame area (ignoring clipping at the border).
    """

    centers: np.ndarray
    sizes: np.ndarray
    widths: np.ndarray
    areas: np.ndarray


def _check_dims(num_frames: int, height: int, width: int) -> None:
    if num_frames < 1:
        raise ConfigError(f"num_frames must be at least 1, got {num_frames}")
    if height < 8 or width < 8:
        raise ConfigError(f"frames must be at least 8x8 pixels, got {height}x{width}")


def ground_truth(
    scene: SceneSpec, num_frames: int = DEFAULT_FRAMES, height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE
) -> GroundTruth:
    """True per-frame centroid, size and area of the subject of ``scene``."""
    _check_dims(num_frames, height, width)
    u = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    offsets, scale = motion_path(scene.motion, u, scene.motion_params)
    centers = np.asarray(scene.anchor)[None, :] + offsets
    sizes = scene.size * scale
    widths = sizes * SHAPE_WIDTH[scene.shape]
    areas = SHAPE_AREA[scene.shape] * (widths * min(height, width)) ** 2 / (height * width)
    return GroundTruth(centers=centers, sizes=sizes, widths=widths, areas=areas)


def background_image(name: str, height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE) -> np.ndarray:
    """The background alone as float32 (height, width, 3) RGB (0..255)."""
    return _background(name, height, width)


def _background(name: str, height: int, width: int) -> np.ndarray:
    colors = np.asarray(BACKGROUND_RGB[name], dtype=np.float32)
    if len(colors) == 1:
        return np.broadcast_to(colors[0], (height, width, 3)).copy()
    cell = max(1, round(min(height, width) / CHECKER_CELLS))
    rows = (np.arange(height) // cell)[:, None]
    cols = (np.arange(width) // cell)[None, :]
    return colors[(rows + cols) % 2]


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, side: np.ndarray | float) -> np.ndarray:
    """Signed distance (negative inside) from offsets (dx, dy) to a shape of width ``side``.

    Polygons use the largest signed distance to their edge lines, exact near the edges.
    """
    half = side / 2.0
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - half
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - half
    if shape == "diamond":
        return (np.abs(dx) + np.abs(dy) - half) / np.sqrt(2.0)
    # Triangle pointing up, base and height equal to ``side``, area centroid at the origin.
    slanted = (2.0 * np.abs(dx) - dy - 2.0 * side / 3.0) / np.sqrt(5.0)
    return np.maximum(dy - side / 3.0, slanted)


def shape_coverage(
    shape: str, centers: np.ndarray, sides: np.ndarray, height: int, width: int, supersample: int = SUPERSAMPLE
) -> np.ndarray:
    """Fraction of each pixel covered by a shape, float32 (N, height, width).

    centers: (N, 2) area centroids (x, y) in pixel units (pixel j spans [j, j + 1));
    sides: (N,) bounding-box widths in pixels. Each pixel is split into supersample**2 cells
    whose coverage is estimated from the signed distance at their centre, so coverage varies
    continuously with position and size.
    """
    ss = supersample
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    sides = np.asarray(sides, dtype=np.float64).reshape(-1)[:, None, None]
    ys = ((np.arange(height * ss) + 0.5) / ss)[None, :, None]
    xs = ((np.arange(width * ss) + 0.5) / ss)[None, None, :]
    distance = _signed_distance(shape, xs - centers[:, 0, None, None], ys - centers[:, 1, None, None], sides)
    cells = np.clip(0.5 - distance * ss, 0.0, 1.0)
    return cells.reshape(len(centers), height, ss, width, ss).mean(axis=(2, 4), dtype=np.float32)


def shape_contrast(
    scene: SceneSpec, num_frames: int = DEFAULT_FRAMES, height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE
) -> np.ndarray:
    """Where the subject's shape shows, float32 (num_frames, height, width) in [0, 1]: per pixel, the
    mean coverage difference between the subject and each other shape of the same centroid and area.
    Highest where every other shape differs (the corners of a square), zero on the background and
    deep inside the subject: the pixels that tell this shape from the others."""
    truth = ground_truth(scene, num_frames, height, width)
    centers = truth.centers * np.array([width, height])
    scale = min(height, width)
    own = shape_coverage(scene.shape, centers, truth.widths * scale, height, width)
    others = [shape_coverage(s, centers, truth.sizes * SHAPE_WIDTH[s] * scale, height, width) for s in SHAPES if s != scene.shape]
    return np.mean([np.abs(own - o) for o in others], axis=0)


def render(
    scene: SceneSpec, num_frames: int = DEFAULT_FRAMES, height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE
) -> np.ndarray:
    """Frames of ``scene`` as uint8 (num_frames, height, width, 3) RGB."""
    truth = ground_truth(scene, num_frames, height, width)
    centers = truth.centers * np.array([width, height])
    return composite(scene, shape_coverage(scene.shape, centers, truth.widths * min(height, width), height, width))


def composite(scene: SceneSpec, coverage: np.ndarray) -> np.ndarray:
    """uint8 (F, H, W, 3) frames of ``scene``'s subject colour over its background, mixed per pixel by
    ``coverage`` (float (F, H, W) in [0, 1])."""
    height, width = coverage.shape[1:]
    background = _background(scene.background, height, width)
    color = np.asarray(COLOR_RGB[scene.color], dtype=np.float32)
    frames = background[None] + coverage[..., None] * (color - background)[None]
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def video_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) frames to float32 (3, F, H, W) in [-1, 1]."""
    import torch

    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError("frames must be a uint8 array of shape (frames, height, width, 3)")
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()
    return tensor / 127.5 - 1.0


def tensor_to_video(tensor: torch.Tensor) -> np.ndarray:
    """float (3, F, H, W) in [-1, 1] to uint8 (F, H, W, 3) frames (values are clipped)."""
    import torch

    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 4 or tensor.shape[0] != 3:
        raise InputError("video tensor must have shape (3, frames, height, width)")
    values = ((tensor.detach().float().cpu().clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return values.to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()


def render_tensor(
    scene: SceneSpec, num_frames: int = DEFAULT_FRAMES, height: int = DEFAULT_SIZE, width: int = DEFAULT_SIZE
) -> torch.Tensor:
    """:func:`render` as float32 (3, num_frames, height, width) in [-1, 1]."""
    return video_to_tensor(render(scene, num_frames, height, width))


def save_video(frames: np.ndarray, path: str | Path, fps: float = DEFAULT_FPS) -> Path:
    """Write uint8 (F, H, W, 3) frames to an .mp4 (H.264, lossy) or .gif file."""
    import imageio.v3 as iio

    target = Path(path)
    video_to_tensor(frames)  # validates the array
    suffix = target.suffix.lower()
    if suffix == ".gif":
        iio.imwrite(target, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    elif suffix == ".mp4":
        if frames.shape[1] % 2 or frames.shape[2] % 2:
            raise InputError(f"mp4 needs even frame sizes, got {frames.shape[1]}x{frames.shape[2]}")
        iio.imwrite(target, frames, plugin="pyav", codec="libx264", fps=fps)
    else:
        raise ConfigError(f"unsupported video format {target.suffix!r}; use .mp4 or .gif")
    return target
