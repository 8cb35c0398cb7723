"""Analysis of toy-world videos: background, subject colour and shape, trajectory, motion.

The oracle reads any uint8 (F, H, W, 3) video, rendered or generated. Steps:

1. Noise level from neighbouring-pixel differences; noisy videos are smoothed for the steps
   that threshold pixels.
2. Background: the pixels of a thin border ring over all frames are fitted by every palette
   background (a point in RGB for a flat colour, the segment between the two colours for the
   checkerboard); the smallest median distance wins.
3. Subject colour: the pixels farthest from the background (largest connected component per
   frame) give a median colour; its name is the palette colour whose mixing line with the
   background passes closest, so blurred, partly covered pixels still name the right colour.
4. Subject coverage: per pixel, alpha = projection of (pixel - background) on (subject -
   background), where the background behind a checkerboard pixel is its median over the
   frames in which the subject does not cover it. The mask is alpha >= 0.5, largest connected
   component per frame. Centroid and area are alpha-weighted, so they are sub-pixel accurate
   on anti-aliased renders.
5. Shape: analysis by synthesis. In up to ``SHAPE_FRAMES`` of the largest frames, every shape
   is rendered at the measured centroid and area, blurred with each of ``SHAPE_BLURS``, scaled
   by a least-squares gain and compared with the measured alpha; the shape with the smallest
   squared residual summed over frames wins. Fitting the blur makes it robust to soft videos.
6. Motion: net displacement (a line fitted to the centroids) and net change of log size (a line
   fitted to log area) are compared with thresholds to name one of the base motions.
   :meth:`VideoAnalysis.fit_motion` instead fits every motion of the vocabulary, held-out
   ones included, to the trajectory (see :func:`motiontune.toyworld.motions.fit_motion`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from motiontune.errors import ConfigError, InputError
from motiontune.toyworld.motions import BASE_MOTIONS, MOTIONS, MotionFit, fit_motion
from motiontune.toyworld.render import ground_truth, render, shape_coverage
from motiontune.toyworld.world import (
    ALL_COLORS,
    BACKGROUND_RGB,
    BACKGROUNDS,
    CHECKER_CELLS,
    COLOR_RGB,
    SHAPE_AREA,
    SHAPES,
    sample_scenes,
)

MOVE_THRESHOLD = 0.1  # net displacement, in frame widths/heights, to call a video moving
SIZE_THRESHOLD = float(np.log(1.3))  # net change of log linear size to call it growing
MIN_AREA_FRACTION = 0.002  # smallest subject, as a fraction of the frame, that counts as found
SHAPE_FRAMES = 8  # frames (the largest ones) used to fit the shape
SHAPE_BLURS = (0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.4)  # Gaussian blurs (pixels) tried in shape fits
SHAPE_MARGIN = 3  # pixels around the subject included in the shape fit
CORE_FRACTION = 0.9  # subject pixels at least this far (relative) from the background give its colour


@dataclass(frozen=True)
class VideoAnalysis:
    """What the oracle sees in a video.

    found_frames: (F,) bool, frames where a subject was found; found: any of them.
    centers: (F, 2) normalised (x, y) alpha-weighted centroids, NaN where not found.
    areas: (F,) subject area as a fraction of the frame (0 where not found).
    masks: (F, H, W) bool subject masks.
    shape_errors: mean squared residual of the best fit of each shape (smaller is better);
        shape_confidence = 1 - best / second best, in [0, 1].
    motion: one of the base motions, from net displacement and size change (None if not found).
    displacement: net (dx, dy) over the clip; size_change: net change of log linear size.
    noise_std: estimated per-pixel noise std of the input (0..255 scale).
    """

    background: str
    background_rgb: tuple[int, int, int]
    found_frames: np.ndarray
    color: str | None = None
    color_rgb: tuple[int, int, int] | None = None
    shape: str | None = None
    shape_confidence: float = 0.0
    centers: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    areas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), dtype=bool))
    motion: str | None = None
    displacement: tuple[float, float] = (0.0, 0.0)
    size_change: float = 0.0
    noise_std: float = 0.0
    shape_errors: dict[str, float] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.found_frames.any())

    @property
    def found_fraction(self) -> float:
        return float(self.found_frames.mean()) if self.found_frames.size else 0.0

    def filled_trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres (F, 2) and areas (F,) with frames where the subject was lost interpolated."""
        if not self.found:
            raise InputError("no subject was found in the video")
        t = np.arange(len(self.found_frames))
        ok = self.found_frames
        centers = np.stack([np.interp(t, t[ok], self.centers[ok, k]) for k in range(2)], axis=-1)
        return centers, np.interp(t, t[ok], self.areas[ok])

    def fit_motion(self, candidates: tuple[str, ...] = MOTIONS) -> MotionFit:
        """The motion of the vocabulary (held-out ones included) that best explains the trajectory."""
        if len(self.found_frames) < 2:
            raise InputError("need at least two frames to fit a motion")
        return fit_motion(*self.filled_trajectory(), candidates=candidates)


def check_video(video: np.ndarray) -> np.ndarray:
    """Validate a uint8 (F, H, W, 3) video and return it as float32."""
    if not isinstance(video, np.ndarray) or video.dtype != np.uint8:
        raise InputError("video must be a numpy uint8 array of shape (frames, height, width, 3)")
    if video.ndim != 4 or video.shape[-1] != 3:
        raise InputError(f"video must have shape (frames, height, width, 3), got {video.shape}")
    if video.shape[0] < 1 or video.shape[1] < 8 or video.shape[2] < 8:
        raise InputError(f"video must have at least one frame of 8x8 pixels, got {video.shape}")
    return video.astype(np.float32)


def estimate_noise(frames: np.ndarray) -> float:
    """Robust per-pixel noise std from horizontal neighbour differences (edges are outliers)."""
    diffs = np.abs(frames[:, :, 1:, :] - frames[:, :, :-1, :])
    return float(1.4826 * np.median(diffs) / np.sqrt(2.0))


def _smooth(frames: np.ndarray, noise: float) -> np.ndarray:
    if noise < 3.0:
        return frames
    sigma = float(np.clip(noise / 15.0, 0.6, 1.2))
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


def _segment_projection(
    points: np.ndarray, a: np.ndarray, b: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """Parameter t in [lo, hi] of the closest point on a + t (b - a), and the distance to it."""
    axis = b - a
    t = np.clip(((points - a) @ axis) / float(axis @ axis), lo, hi)
    closest = a + t[..., None] * axis
    return t, np.linalg.norm(points - closest, axis=-1)


def _border(frames: np.ndarray) -> np.ndarray:
    ring = max(1, min(frames.shape[1:3]) // 32)
    mask = np.zeros(frames.shape[1:3], dtype=bool)
    mask[:ring, :] = mask[-ring:, :] = mask[:, :ring] = mask[:, -ring:] = True
    return frames[:, mask, :].reshape(-1, 3)


@dataclass(frozen=True)
class FittedBackground:
    """A background name and its measured colour(s): one, or two for a checkerboard."""

    name: str
    colors: tuple[np.ndarray, ...]


def fit_background(frames: np.ndarray) -> FittedBackground:
    """Name and measured colour(s) of the background from the border pixels of all frames."""
    ring = _border(frames)
    best: tuple[float, FittedBackground] | None = None
    for name in BACKGROUNDS:
        palette = [np.asarray(c, dtype=np.float32) for c in BACKGROUND_RGB[name]]
        if len(palette) == 1:
            cost = float(np.median(np.linalg.norm(ring - palette[0], axis=-1)))
            measured: tuple[np.ndarray, ...] = (np.median(ring, axis=0),)
        else:
            t, dist = _segment_projection(ring, palette[0], palette[1], 0.0, 1.0)
            dark, light = t < 0.5, t >= 0.5
            cost = float(np.median(dist))
            if min(dark.mean(), light.mean()) < 0.15:  # a checkerboard shows both colours
                cost += 1000.0
                measured = tuple(palette)
            else:
                measured = (np.median(ring[dark], axis=0), np.median(ring[light], axis=0))
        if best is None or cost < best[0]:
            best = (cost, FittedBackground(name, measured))
    assert best is not None
    return best[1]


def _background_distance(frames: np.ndarray, bg: FittedBackground) -> np.ndarray:
    if len(bg.colors) == 1:
        return np.linalg.norm(frames - bg.colors[0], axis=-1)
    return _segment_projection(frames, bg.colors[0], bg.colors[1], 0.0, 1.0)[1]


def _background_image(frames: np.ndarray, bg: FittedBackground, candidates: np.ndarray) -> np.ndarray:
    """Background colour behind every pixel, broadcastable to (F, H, W, 3).

    Flat: the measured colour. Checkerboard: each pixel's median over the frames where the
    subject (``candidates`` grown by two pixels) does not cover it; pixels covered in every
    frame take the value of the nearest pixel that is not.
    """
    if len(bg.colors) == 1:
        return bg.colors[0]
    kernel = np.ones((5, 5), np.uint8)
    hidden = np.stack([cv2.dilate(c.astype(np.uint8), kernel) for c in candidates]).astype(bool)
    ever_seen = (~hidden).any(axis=0)
    if not ever_seen.any():
        return np.mean(bg.colors, axis=0)
    static = np.zeros(frames.shape[1:], dtype=np.float32)
    seen_values = np.where(hidden[:, ever_seen, None], np.nan, frames[:, ever_seen, :])
    static[ever_seen] = np.nanmedian(seen_values, axis=0)
    if not ever_seen.all():
        model = _checkerboard_model(static, ever_seen, bg.colors[0], bg.colors[1])
        if model is not None:
            static[~ever_seen] = model[~ever_seen]
        else:
            never = (~ever_seen).astype(np.uint8)
            _, labels = cv2.distanceTransformWithLabels(never, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
            lookup = np.zeros((int(labels.max()) + 1, 3), dtype=np.float32)
            lookup[labels[ever_seen]] = static[ever_seen]
            static = lookup[labels]
    return static


def _checkerboard_model(image: np.ndarray, seen: np.ndarray, dark: np.ndarray, light: np.ndarray) -> np.ndarray | None:
    """A (blurred) checkerboard fitted to the ``seen`` pixels of ``image``, or None if none fits.

    Cell sizes near the rendered one, every phase and the blurs of ``SHAPE_BLURS`` are tried.
    """
    height, width = seen.shape
    is_light = _segment_projection(image, dark, light, 0.0, 1.0)[0] >= 0.5
    rows, cols = np.mgrid[0:height, 0:width]
    nominal = max(1, round(min(height, width) / CHECKER_CELLS))
    best: tuple[float, np.ndarray] | None = None
    for cell in range(max(1, nominal - 1), nominal + 2):
        for dy in range(cell):
            for dx in range(cell):
                pattern = ((rows + dy) // cell + (cols + dx) // cell) % 2 == 1
                agreement = float((pattern[seen] == is_light[seen]).mean())
                for candidate, score in ((pattern, agreement), (~pattern, 1.0 - agreement)):
                    if best is None or score > best[0]:
                        best = (score, candidate)
    if best is None or best[0] < 0.9:
        return None
    sharp = np.where(best[1][..., None], light, dark).astype(np.float32)
    fits = []
    for sigma in SHAPE_BLURS:
        model = cv2.GaussianBlur(sharp, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma else sharp
        fits.append((float(((model - image)[seen] ** 2).sum()), model))
    return min(fits, key=lambda f: f[0])[1]


def _alpha(frames: np.ndarray, background: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """Subject coverage per pixel: projection of (pixel - background) on (subject - background)."""
    axis = subject - background
    return np.sum((frames - background) * axis, axis=-1) / np.maximum(np.sum(axis * axis, axis=-1), 1.0)


def _largest_component(mask: np.ndarray, weight: np.ndarray) -> np.ndarray:
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    sums = np.bincount(labels.ravel(), weights=weight.ravel(), minlength=count)
    sums[0] = -np.inf
    return labels == int(np.argmax(sums))


def name_color(rgb: np.ndarray, background_rgb: np.ndarray) -> str:
    """Palette colour whose mixing line with the background passes closest to ``rgb``."""
    base = np.asarray(background_rgb, dtype=np.float32)
    point = np.asarray(rgb, dtype=np.float32)
    distances = {
        name: float(_segment_projection(point, base, np.asarray(COLOR_RGB[name], np.float32), 0.35, 1.15)[1])
        for name in ALL_COLORS
    }
    return min(distances, key=distances.__getitem__)


def _subject_color(frames: np.ndarray, raw: np.ndarray, distance: np.ndarray, threshold: float) -> np.ndarray | None:
    """Median raw colour of the most saturated subject pixels, or None if nothing stands out.

    The pixels are picked in the (smoothed) ``frames`` and read in the unsmoothed ``raw``
    frames, so neither smoothing nor noise pulls the colour towards the background.
    """
    picked = []
    for index in range(len(frames)):
        component = _largest_component(distance[index] > threshold, distance[index])
        if component.any():
            picked.append((raw[index][component], distance[index][component]))
    if not picked:
        return None
    pixels = np.concatenate([p for p, _ in picked])
    dist = np.concatenate([d for _, d in picked])
    core = dist >= CORE_FRACTION * np.quantile(dist, 0.95)
    return np.median(pixels[core], axis=0)


@dataclass(frozen=True)
class _ShapeCrop:
    alpha: np.ndarray  # (h, w) measured coverage around the subject
    center: tuple[float, float]  # centroid (x, y) in crop pixel units
    area: float  # coverage sum, pixels


def fit_shape(crops: list[_ShapeCrop]) -> dict[str, float]:
    """Mean squared residual of the best blurred, gain-scaled template of each shape.

    Crops are zero-padded to a common size and fitted all at once; the blur is chosen per
    frame and shape.
    """
    if not crops:
        return {name: 0.0 for name in SHAPES}
    h = max(c.alpha.shape[0] for c in crops)
    w = max(c.alpha.shape[1] for c in crops)
    measured = np.zeros((h, w, len(crops)), dtype=np.float32)
    for index, crop in enumerate(crops):
        measured[: crop.alpha.shape[0], : crop.alpha.shape[1], index] = crop.alpha
    centers = np.array([c.center for c in crops])
    areas = np.array([c.area for c in crops])
    errors = {}
    for name in SHAPES:
        widths = np.sqrt(areas / SHAPE_AREA[name])
        sharp = np.ascontiguousarray(shape_coverage(name, centers, widths, h, w).transpose(1, 2, 0))
        best = np.full(len(crops), np.inf)
        for sigma in SHAPE_BLURS:
            template = sharp if not sigma else cv2.GaussianBlur(sharp, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
            template = template.reshape(h, w, len(crops))
            gain = (measured * template).sum(axis=(0, 1)) / np.maximum((template * template).sum(axis=(0, 1)), 1e-6)
            best = np.minimum(best, ((measured - gain * template) ** 2).sum(axis=(0, 1)))
        errors[name] = float(best.sum()) / (h * w * len(crops))
    return errors


def _fit_slope(values: np.ndarray) -> float:
    """Total change over the clip of the least-squares line through ``values``."""
    if len(values) < 2:
        return 0.0
    t = np.linspace(0.0, 1.0, len(values))
    return float(np.polyfit(t, values, 1)[0])


def classify_motion(centers: np.ndarray, areas: np.ndarray) -> tuple[str, tuple[float, float], float]:
    """Base motion name, net displacement (dx, dy) and net log-size change of a trajectory."""
    dx, dy = _fit_slope(centers[:, 0]), _fit_slope(centers[:, 1])
    size_change = _fit_slope(0.5 * np.log(np.maximum(areas, 1e-8)))
    move_score = float(np.hypot(dx, dy)) / MOVE_THRESHOLD
    size_score = abs(size_change) / SIZE_THRESHOLD
    if max(move_score, size_score) < 1.0:
        motion = "still"
    elif size_score > move_score:
        motion = "grow" if size_change > 0 else "shrink"
    elif abs(dx) >= abs(dy):
        motion = "right" if dx > 0 else "left"
    else:
        motion = "down" if dy > 0 else "up"
    return motion, (dx, dy), size_change


def analyze(video: np.ndarray) -> VideoAnalysis:
    """Analyse a uint8 (F, H, W, 3) video; see the module docstring for the method."""
    raw = check_video(video)
    num_frames, height, width = raw.shape[:3]
    noise = estimate_noise(raw)
    frames = _smooth(raw, noise)
    bg = fit_background(frames)
    bg_mean = np.mean(bg.colors, axis=0)
    bg_rgb = tuple(int(round(c)) for c in bg_mean)
    distance = _background_distance(frames, bg)
    threshold = max(40.0, 4.0 * estimate_noise(frames))
    subject = _subject_color(frames, raw, distance, threshold)
    nothing = VideoAnalysis(
        bg.name, bg_rgb, np.zeros(num_frames, dtype=bool), centers=np.full((num_frames, 2), np.nan),
        areas=np.zeros(num_frames), masks=np.zeros((num_frames, height, width), dtype=bool), noise_std=noise,
    )
    if subject is None:
        return nothing

    background = _background_image(frames, bg, distance > threshold)
    alpha = _alpha(frames, background, subject)
    raw_alpha = _alpha(raw, background, subject)
    weight = np.clip(alpha, 0.0, 1.0)
    min_pixels = max(2.0, MIN_AREA_FRACTION * height * width)
    masks, centers, areas = nothing.masks.copy(), nothing.centers.copy(), nothing.areas.copy()
    found = np.zeros(num_frames, dtype=bool)
    crops: list[_ShapeCrop] = []
    ys, xs = np.mgrid[0:height, 0:width]
    near = np.ones((5, 5), np.uint8)
    margin = np.ones((2 * SHAPE_MARGIN + 1,) * 2, np.uint8)
    for index in range(num_frames):
        component = _largest_component(alpha[index] >= 0.5, weight[index])
        if component.sum() < min_pixels:
            continue
        w = np.where(cv2.dilate(component.astype(np.uint8), near).astype(bool), weight[index], 0.0)
        total = float(w.sum())
        cx, cy = float((xs * w).sum()) / total + 0.5, float((ys * w).sum()) / total + 0.5
        masks[index], found[index] = component, True
        areas[index] = total / (height * width)
        centers[index] = cx / width, cy / height
        rows, cols = np.nonzero(cv2.dilate(component.astype(np.uint8), margin))
        r0, c0 = rows.min(), cols.min()
        crop = raw_alpha[index, r0:rows.max() + 1, c0:cols.max() + 1].astype(np.float32)
        crops.append(_ShapeCrop(crop, (cx - c0, cy - r0), total))
    if not found.any():
        return nothing

    crops.sort(key=lambda c: -c.area)
    errors = fit_shape(crops[:SHAPE_FRAMES])
    ranked = sorted(errors, key=errors.__getitem__)
    confidence = 1.0 - errors[ranked[0]] / errors[ranked[1]] if errors[ranked[1]] > 0 else 1.0
    analysis = replace(
        nothing, found_frames=found, color=name_color(subject, bg_mean),
        color_rgb=tuple(int(round(c)) for c in subject), shape=ranked[0], shape_confidence=float(confidence),
        centers=centers, areas=areas, masks=masks, shape_errors=errors,
    )
    filled_centers, filled_areas = analysis.filled_trajectory()
    motion, displacement, size_change = classify_motion(filled_centers, filled_areas)
    return replace(analysis, motion=motion, displacement=displacement, size_change=size_change)


@dataclass(frozen=True)
class OracleAccuracy:
    """Share of scenes where the oracle names each attribute right, and its centroid error."""

    scenes: int
    color: float
    shape: float
    background: float
    motion: float  # base-motion class, over scenes with a base motion only
    motion_pattern: float  # best-fitting motion of the whole vocabulary, over all scenes
    found: float
    centroid_error_px: float  # mean distance to the true centroid, pixels
    area_error: float  # mean relative error of the area


def corrupt(
    video: np.ndarray, noise_std: float = 0.0, blur: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Gaussian blur (sigma in pixels) then additive Gaussian noise (std on 0..255), clipped."""
    frames = video.astype(np.float32)
    if blur > 0:
        frames = np.stack([cv2.GaussianBlur(f, (0, 0), blur) for f in frames])
    if noise_std > 0:
        gen = rng if rng is not None else np.random.default_rng(0)
        frames = frames + gen.normal(0.0, noise_std, frames.shape).astype(np.float32)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def oracle_accuracy(
    n: int = 300,
    noise_std: float = 0.0,
    blur: float = 0.0,
    seed: int = 0,
    split: str = "all",
    num_frames: int = 17,
    height: int = 32,
    width: int = 32,
) -> OracleAccuracy:
    """Measure the oracle on ``n`` random scenes of ``split``, optionally blurred and noised."""
    if n < 1:
        raise ConfigError(f"need at least one scene, got n={n}")
    gen = np.random.default_rng(seed + 1)
    hits = {"color": 0, "shape": 0, "background": 0, "found": 0}
    motion_hits, motion_total, pattern_hits = 0, 0, 0
    centroid_errors, area_errors = [], []
    for scene in sample_scenes(n, seed, split):
        video = corrupt(render(scene, num_frames, height, width), noise_std, blur, gen)
        result = analyze(video)
        truth = ground_truth(scene, num_frames, height, width)
        hits["color"] += result.color == scene.color
        hits["shape"] += result.shape == scene.shape
        hits["background"] += result.background == scene.background
        hits["found"] += result.found
        if scene.motion in BASE_MOTIONS:
            motion_total += 1
            motion_hits += result.motion == scene.motion
        ok = result.found_frames
        if ok.any() and num_frames > 1:
            pattern_hits += result.fit_motion().motion == scene.motion
        if ok.any():
            delta = (result.centers[ok] - truth.centers[ok]) * np.array([width, height])
            centroid_errors.append(float(np.linalg.norm(delta, axis=-1).mean()))
            area_errors.append(float(np.mean(np.abs(result.areas[ok] / truth.areas[ok] - 1.0))))
    return OracleAccuracy(
        scenes=n,
        color=hits["color"] / n,
        shape=hits["shape"] / n,
        background=hits["background"] / n,
        motion=motion_hits / motion_total if motion_total else float("nan"),
        motion_pattern=pattern_hits / n,
        found=hits["found"] / n,
        centroid_error_px=float(np.mean(centroid_errors)) if centroid_errors else float("nan"),
        area_error=float(np.mean(area_errors)) if area_errors else float("nan"),
    )

