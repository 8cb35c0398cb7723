"""Turning reference clips and images into backbone inputs.

A backbone constrains the number of frames it accepts with a *frame rule* ``(k, r)``: the
count ``n`` must satisfy ``n % k == r`` (Wan and CogVideoX: ``(4, 1)``, i.e. 4k+1 frames;
most others: ``(1, 0)``, any count). ``k == 0`` means a fixed count: exactly ``r`` frames
(Latte, for example, ``(0, 16)``). Functions taking a rule also accept an object with ``k``,
``r`` and optional ``fixed`` attributes, such as :class:`motiontune.backbones.base.FrameRule`.

Prepared tensors are float32 in ``[-1, 1]``: ``(C, F, H, W)`` for clips, ``(C, H, W)`` for
images.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import cv2
import numpy as np
import torch

from motiontune.data.video_io import (
    PathLike,
    VideoClip,
    read_image,
    read_video,
    to_uint8_frames,
    to_uint8_image,
)
from motiontune.errors import ConfigError, InputError

FrameRule = tuple[int, int]
FrameRuleLike = Any  # a FrameRule tuple, or an object with ``k``, ``r`` (and ``fixed``)
SamplingMode = Literal["uniform", "stride", "first"]
ResizeMode = Literal["center_crop", "resize", "pad"]
RoundingMode = Literal["floor", "ceil", "nearest"]

log = logging.getLogger("motiontune")

ANY_FRAME_COUNT: FrameRule = (1, 0)
FOUR_K_PLUS_ONE: FrameRule = (4, 1)

_SAMPLING_MODES = ("uniform", "stride", "first")
_RESIZE_MODES = ("center_crop", "resize", "pad")
#: the command line's words for the resize modes
RESIZE_MODE_WORDS = {"crop": "center_crop", "stretch": "resize", "pad": "pad"}
_ROUNDING_MODES = ("floor", "ceil", "nearest")


# --------------------------------------------------------------------------------------------
# Frame-count rules
# --------------------------------------------------------------------------------------------


def frame_count_rule(k: int, r: int) -> FrameRule:
    """Return the validated rule ``(k, r)``: counts ``n >= 1`` with ``n % k == r``.

    ``k == 0`` stands for a fixed count of exactly ``r`` frames.
    """
    if k < 0:
        raise ConfigError(f"frame rule k must be >= 0, got {k}")
    if k == 0 and r < 1:
        raise ConfigError(f"a fixed frame count must be at least 1, got {r}")
    if k > 0 and not 0 <= r < k:
        raise ConfigError(f"frame rule r must satisfy 0 <= r < k, got k={k}, r={r}")
    return (k, r)


def as_frame_rule(rule: FrameRuleLike) -> FrameRule:
    """Normalise ``(k, r)`` tuples and rule objects (``k``, ``r``, ``fixed``) to ``(k, r)``."""
    if isinstance(rule, tuple) and len(rule) == 2:
        return frame_count_rule(int(rule[0]), int(rule[1]))
    if hasattr(rule, "k") and hasattr(rule, "r"):
        fixed = getattr(rule, "fixed", None)
        if fixed is not None:
            return frame_count_rule(0, int(fixed))
        k = int(rule.k)
        return frame_count_rule(k, int(rule.r) % k if k else int(rule.r))
    raise ConfigError(f"frame rule must be a (k, r) tuple or a rule object, got {rule!r}")


def valid_frame_count(n: int, k: int, r: int) -> bool:
    """Whether ``n`` frames satisfy the rule ``(k, r)``."""
    frame_count_rule(k, r)
    if n < 1:
        return False
    return n == r if k == 0 else n % k == r


def nearest_valid_frame_count(n: int, k: int, r: int, mode: RoundingMode = "floor") -> int:
    """The valid count closest to ``n``: at most ``n`` ("floor"), at least ``n`` ("ceil"),
    or whichever is closer ("nearest", ties go to the smaller count).

    Raises :class:`ConfigError` when no valid count lies on the requested side (for example
    "floor" below the smallest valid count, or "ceil" above a fixed count).
    """
    if mode not in _ROUNDING_MODES:
        raise ConfigError(f"unknown rounding mode {mode!r} (use {', '.join(_ROUNDING_MODES)})")
    lower, upper = _valid_neighbours(n, k, r)
    needs = describe_frame_rule((k, r))
    if mode == "floor" or (mode == "nearest" and upper is None):
        if lower is None:
            raise ConfigError(f"no valid frame count <= {n}: the backbone needs {needs}")
        return lower
    if upper is None:
        raise ConfigError(f"no valid frame count >= {n}: the backbone needs {needs}")
    if mode == "ceil" or lower is None:
        return upper
    return lower if n - lower <= upper - n else upper


def describe_frame_rule(rule: FrameRuleLike) -> str:
    """Readable rule: ``4k+1 frames``, ``exactly 16 frames``, ``any number of frames``..."""
    k, r = as_frame_rule(rule)
    if k == 0:
        return f"exactly {r} frames"
    if k == 1:
        return "any number of frames"
    return f"{k}k+{r} frames" if r else f"a multiple of {k} frames"


def check_frame_count(num_frames: int, rule: FrameRuleLike | None) -> None:
    """Raise :class:`ConfigError` naming valid counts if ``num_frames`` breaks ``rule``."""
    if num_frames < 1:
        raise ConfigError(f"num_frames must be at least 1, got {num_frames}")
    if rule is None:
        return
    rule = as_frame_rule(rule)
    if valid_frame_count(num_frames, *rule):
        return
    raise ConfigError(
        f"num_frames={num_frames} is not valid for this backbone: "
        f"it needs {describe_frame_rule(rule)}{_examples(num_frames, rule)}"
    )


def _examples(n: int, rule: FrameRule) -> str:
    """Valid counts around ``n``, e.g. `` (13, 17, ...)``; empty for fixed counts."""
    k, r = rule
    if k == 0:
        return ""
    lower, upper = _valid_neighbours(n, k, r)
    assert upper is not None  # periodic rules always have a larger valid count
    shown = [upper] if lower is None else [lower, upper]
    if lower is None:
        shown.append(upper + k)
    return " (" + ", ".join(str(c) for c in shown) + ", ...)"


def _valid_neighbours(n: int, k: int, r: int) -> tuple[int | None, int | None]:
    """Largest valid count ``<= n`` and smallest valid count ``>= n`` (None where absent)."""
    frame_count_rule(k, r)
    if k == 0:
        return (r if r <= n else None), (r if r >= n else None)
    smallest = r if r >= 1 else k
    lower = n - ((n - r) % k)
    upper = lower if lower == n else lower + k
    return (lower if lower >= smallest else None), max(upper, smallest)


# --------------------------------------------------------------------------------------------
# Temporal sampling
# --------------------------------------------------------------------------------------------


def sample_indices(
    total: int,
    num_frames: int,
    stride: int | None = None,
    start: int = 0,
    mode: SamplingMode = "uniform",
    allow_repeat: bool = False,
    name: str = "clip",
    end: int | None = None,
) -> list[int]:
    """Indices of the frames to keep from a clip of ``total`` frames.

    All modes look at the frames from ``start`` on, and before ``end`` when it is given (the
    segment ``start <= i < end``). "uniform" spreads ``num_frames`` evenly from ``start`` to the
    segment's last frame; "stride" takes every ``stride``-th frame from ``start``; "first" takes
    ``num_frames`` consecutive frames from ``start``.

    If the clip is too short, :class:`InputError` names the clip (``name``) unless
    ``allow_repeat`` is set; then the requested count is spread evenly over the available
    frames, so frames repeat (the motion is slowed down rather than frozen or looped).
    """
    _check_sampling_args(num_frames, stride, start, mode, end)
    last = total if end is None else min(total, end)  # the segment's end (exclusive)
    needed = _frames_needed(num_frames, stride, start, mode)
    if last < needed:
        if not allow_repeat or start >= last:
            detail = _detail(num_frames, stride, start, mode)
            cut = f" before frame {end}" if last < total else ""
            raise InputError(f"{name}: has {last} frames{cut}, {needed} are needed{detail}")
        return _spread(start, last - 1, num_frames)
    if mode == "uniform":
        return _spread(start, last - 1, num_frames)
    step = stride if mode == "stride" else 1
    return [start + step * i for i in range(num_frames)]


def sample_frames(
    frames: np.ndarray | VideoClip,
    num_frames: int,
    stride: int | None = None,
    start: int = 0,
    mode: SamplingMode = "uniform",
    allow_repeat: bool = False,
    name: str | None = None,
) -> np.ndarray:
    """Select ``num_frames`` frames from a clip (see :func:`sample_indices` for the modes).

    ``frames`` is a :class:`VideoClip` (its path names it in errors) or an ``(F, ...)`` array,
    named by ``name`` in errors.
    """
    if isinstance(frames, VideoClip):
        array, label = frames.frames, name or frames.path
    else:
        array, label = frames, name or "clip"
    indices = sample_indices(len(array), num_frames, stride, start, mode, allow_repeat, label)
    return array[np.asarray(indices, dtype=np.int64)]


def _check_sampling_args(num_frames: int, stride: int | None, start: int, mode: str, end: int | None = None) -> None:
    if mode not in _SAMPLING_MODES:
        raise ConfigError(f"unknown sampling mode {mode!r} (use {', '.join(_SAMPLING_MODES)})")
    if num_frames < 1:
        raise ConfigError(f"num_frames must be at least 1, got {num_frames}")
    if start < 0:
        raise ConfigError(f"start must be >= 0, got {start}")
    if end is not None and end <= start:
        raise ConfigError(f"end must be above start ({start}), got {end}")
    if mode == "stride" and (stride is None or stride < 1):
        raise ConfigError(f"sampling mode 'stride' needs stride >= 1, got {stride}")


def _frames_needed(num_frames: int, stride: int | None, start: int, mode: str) -> int:
    step = stride if mode == "stride" and stride else 1
    return start + step * (num_frames - 1) + 1


def _detail(num_frames: int, stride: int | None, start: int, mode: str) -> str:
    if mode == "stride":
        return f" ({num_frames} frames at stride {stride} from frame {start})"
    return f" ({num_frames} frames from frame {start})" if start else ""


def _spread(first: int, last: int, count: int) -> list[int]:
    positions = np.linspace(first, last, count)
    return [int(i) for i in np.floor(positions + 0.5)]


# --------------------------------------------------------------------------------------------
# Spatial resizing
# --------------------------------------------------------------------------------------------


def resize_and_crop(
    frames: np.ndarray,
    height: int,
    width: int,
    mode: ResizeMode = "center_crop",
    pad_value: int = 0,
) -> np.ndarray:
    """Resize uint8 ``(F, H, W, 3)`` frames (or one ``(H, W, 3)`` image) to ``height x width``.

    * "center_crop": scale keeping the aspect ratio so the frame covers the target, then crop
      the centre;
    * "resize": stretch to the target size;
    * "pad": scale keeping the aspect ratio so the frame fits, then letterbox with
      ``pad_value``.

    Downscaling uses ``cv2.INTER_AREA``, upscaling ``cv2.INTER_CUBIC``.
    """
    mode = check_resize_mode(mode)
    if height < 1 or width < 1:
        raise ConfigError(f"target size must be positive, got {height}x{width}")
    if frames.ndim == 3:
        return resize_and_crop(frames[None], height, width, mode, pad_value)[0]
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ConfigError(f"expected frames of shape (F, H, W, C), got {tuple(frames.shape)}")
    src_h, src_w = frames.shape[1:3]
    if mode == "resize":
        return _resize_all(frames, height, width)
    cover = mode == "center_crop"
    scale = (max if cover else min)(height / src_h, width / src_w)
    new_h = _scaled(src_h, scale, height, cover)
    new_w = _scaled(src_w, scale, width, cover)
    resized = _resize_all(frames, new_h, new_w)
    if cover:
        return _center_crop(resized, height, width)
    return _pad(resized, height, width, pad_value)


def check_resize_mode(mode: str) -> ResizeMode:
    """``mode`` as one of the names above; the command line's words crop, stretch and pad are
    accepted too."""
    mode = RESIZE_MODE_WORDS.get(mode, mode)
    if mode not in _RESIZE_MODES:
        raise ConfigError(f"unknown resize mode {mode!r} (use crop, stretch or pad)")
    return mode


def _scaled(size: int, scale: float, target: int, cover: bool) -> int:
    """Scaled side length, never smaller (cover) or larger (fit) than the target."""
    value = max(1, int(round(size * scale)))
    return max(value, target) if cover else min(value, target)


def _resize_all(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    src_h, src_w = frames.shape[1:3]
    if (src_h, src_w) == (height, width):
        return frames
    shrinking = height * width < src_h * src_w
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    resized = [cv2.resize(f, (width, height), interpolation=interpolation) for f in frames]
    return np.stack([r[..., None] if r.ndim == 2 else r for r in resized])


def _center_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    top = (frames.shape[1] - height) // 2
    left = (frames.shape[2] - width) // 2
    return np.ascontiguousarray(frames[:, top : top + height, left : left + width])


def _pad(frames: np.ndarray, height: int, width: int, value: int) -> np.ndarray:
    top = (height - frames.shape[1]) // 2
    left = (width - frames.shape[2]) // 2
    out = np.full((frames.shape[0], height, width, frames.shape[3]), value, dtype=frames.dtype)
    out[:, top : top + frames.shape[1], left : left + frames.shape[2]] = frames
    return out


# --------------------------------------------------------------------------------------------
# Backbone inputs
# --------------------------------------------------------------------------------------------


def prepare_video(
    source: PathLike | np.ndarray | VideoClip | torch.Tensor,
    num_frames: int,
    height: int,
    width: int,
    frame_rule: FrameRuleLike | None = None,
    sampling: SamplingMode = "uniform",
    stride: int | None = None,
    start: int = 0,
    allow_repeat: bool = False,
    resize_mode: ResizeMode = "center_crop",
    end: int | None = None,
    log_info: bool = False,
) -> torch.Tensor:
    """Read, sample, resize and normalise a clip into a float32 ``(3, F, H, W)`` tensor in
    ``[-1, 1]``.

    ``source`` is a path accepted by :func:`read_video`, a :class:`VideoClip`, or an array
    accepted by :func:`to_uint8_frames`. ``frame_rule`` is checked before anything is read.
    Frames are taken from the segment ``start <= i < end`` (see :func:`sample_indices`). With
    ``log_info``, one info line on the ``motiontune`` logger says what was done
    (:func:`describe_preparation`).
    """
    check_frame_count(num_frames, frame_rule)
    _check_sampling_args(num_frames, stride, start, sampling, end)
    resize_mode = check_resize_mode(resize_mode)
    seen: dict[str, Any] = {}

    def select(total: int, name: str) -> list[int]:
        seen["total"] = total
        seen["indices"] = sample_indices(total, num_frames, stride, start, sampling, allow_repeat, name, end)
        return seen["indices"]

    if isinstance(source, (VideoClip, np.ndarray, torch.Tensor)):
        clip = _load_clip(source)
        name = clip.path
        sampled = clip.frames[np.asarray(select(len(clip.frames), name), dtype=np.int64)]
    else:  # a file or folder: only the sampled frames are decoded and kept
        name = str(source)
        sampled = read_video(source, select=lambda total: select(total, name)).frames
    if log_info:
        log.info(describe_preparation(name, seen["total"], sampled.shape[1:3], seen["indices"], sampling, stride,
                                      (height, width), resize_mode))
    resized = resize_and_crop(sampled, height, width, resize_mode)
    return _normalise(resized).permute(3, 0, 1, 2).contiguous()


def describe_preparation(name: str, total: int, size: tuple[int, int], indices: list[int], sampling: str,
                         stride: int | None, target: tuple[int, int], resize_mode: str) -> str:
    """One line saying how a clip became backbone input, e.g. ``ref.mp4: 250 frames 640x272 ->
    17 frames (uniform, frames 0-249) at 32x32, scaled and center-cropped`` (sizes are width x height)."""
    how = {"uniform": "uniform", "stride": f"stride {stride}", "first": "consecutive"}[sampling]
    if len(set(indices)) < len(indices):
        how += ", frames repeated"
    (h, w), (th, tw) = size, target
    resized = "same size" if (h, w) == (th, tw) else {
        "center_crop": "scaled and center-cropped", "resize": "stretched", "pad": "scaled and padded"}[resize_mode]
    return (f"{name}: {total} frames {w}x{h} -> {len(indices)} frames ({how}, frames {indices[0]}-{indices[-1]}) "
            f"at {tw}x{th}, {resized}")


def prepare_image(
    source: PathLike | np.ndarray | torch.Tensor,
    height: int,
    width: int,
    resize_mode: ResizeMode = "center_crop",
) -> torch.Tensor:
    """Read, resize and normalise an image into a float32 ``(3, H, W)`` tensor in ``[-1, 1]``.

    ``source`` is a path accepted by :func:`read_image` or an array accepted by
    :func:`to_uint8_image`.
    """
    if isinstance(source, (np.ndarray, torch.Tensor)):
        image = to_uint8_image(source)
    else:
        image = read_image(source)
    resized = resize_and_crop(image, height, width, resize_mode)
    return _normalise(resized).permute(2, 0, 1).contiguous()


def _load_clip(source: VideoClip | np.ndarray | torch.Tensor) -> VideoClip:
    if isinstance(source, VideoClip):
        return source
    return VideoClip(frames=to_uint8_frames(source), fps=0.0, path="clip")


def _normalise(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)


__all__ = [
    "ANY_FRAME_COUNT",
    "FOUR_K_PLUS_ONE",
    "FrameRule",
    "as_frame_rule",
    "check_frame_count",
    "check_resize_mode",
    "describe_frame_rule",
    "describe_preparation",
    "frame_count_rule",
    "nearest_valid_frame_count",
    "prepare_image",
    "prepare_video",
    "resize_and_crop",
    "sample_frames",
    "sample_indices",
    "valid_frame_count",
]
