"""Reading and writing videos, GIFs, frame folders and images.

Every reader returns uint8 RGB arrays: ``(F, H, W, 3)`` for clips and ``(H, W, 3)`` for images.
Problems with the user's files raise :class:`~motiontune.errors.InputError` with a one-line
message that starts with the offending path.

Writers accept the layouts described in :func:`to_uint8_frames` and :func:`to_uint8_image`
and are atomic: the data goes to a hidden temporary file next to the target, which is then
moved over the final name with :func:`os.replace`.
"""

from __future__ import annotations

import os
import re
import stat
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Union

import av
import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from motiontune.errors import ConfigError, InputError

PathLike = Union[str, "os.PathLike[str]"]

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".webm", ".mkv", ".avi")
GIF_EXTENSIONS: tuple[str, ...] = (".gif",)
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
READ_VIDEO_EXTENSIONS: tuple[str, ...] = VIDEO_EXTENSIONS + GIF_EXTENSIONS

# Container format and encoder for each extension ``write_video`` can produce (besides GIF).
_ENCODERS: dict[str, tuple[str, str]] = {
    ".mp4": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
}
WRITE_VIDEO_EXTENSIONS: tuple[str, ...] = tuple(_ENCODERS) + GIF_EXTENSIONS

DEFAULT_FPS = 8.0
"""Frame rate assumed for frame folders and for files that do not store one."""

_PIL_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
}


@dataclass
class VideoClip:
    """Decoded clip: ``frames`` is uint8 ``(F, H, W, 3)`` RGB, ``fps`` frames per second."""

    frames: np.ndarray
    fps: float
    path: str

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    def __len__(self) -> int:
        return self.num_frames


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_video(
    path: PathLike,
    max_frames: int | None = None,
    select: Callable[[int], Sequence[int]] | None = None,
) -> VideoClip:
    """Read a video file, an animated GIF or a folder of frames as a :class:`VideoClip`.

    ``max_frames`` stops decoding after that many frames (the start of the clip is kept).
    ``select`` maps the clip's frame count to the indices of the frames to keep (in order,
    repeats allowed); only those frames are converted and kept, so a long clip costs the memory
    of the frames used. Folders are read in natural order (``frame2`` before ``frame10``) at
    :data:`DEFAULT_FPS`. Pipes, sockets and devices are refused before they are opened.
    """
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"max_frames must be at least 1, got {max_frames}")
    name = str(path)
    p = Path(path)
    if _check_readable(p, name):
        frames, fps = _read_frame_folder(p, name, max_frames, select)
    else:
        ext = p.suffix.lower()
        if ext in GIF_EXTENSIONS:
            frames, fps = _read_gif(p, name, max_frames, select)
        elif ext in VIDEO_EXTENSIONS:
            frames, fps = _read_video_file(p, name, max_frames, select)
        else:
            raise InputError(
                f"{name}: unsupported extension {ext or '(none)'!r} "
                f"(supported: {_join(READ_VIDEO_EXTENSIONS)}, or a folder of "
                f"{_join(IMAGE_EXTENSIONS)} frames)"
            )
    return VideoClip(frames=frames, fps=fps, path=name)


def _check_readable(p: Path, name: str) -> bool:
    """Whether ``p`` is a folder (else a regular file); InputError for anything unreadable.

    Nothing is opened: a FIFO would block until a writer appears.
    """
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise InputError(f"{name}: file does not exist") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    is_dir = stat.S_ISDIR(mode)
    if not is_dir and not stat.S_ISREG(mode):
        raise InputError(f"{name}: not a regular file (a pipe, socket or device); give a video file or a folder of frames")
    if not os.access(p, os.R_OK | (os.X_OK if is_dir else 0)):
        raise InputError(f"{name}: permission denied")
    return is_dir


def _selection(select: Callable[[int], Sequence[int]] | None, total: int, name: str) -> list[int] | None:
    """The indices ``select`` picks from ``total`` frames, checked to lie in the clip."""
    if select is None:
        return None
    indices = [int(i) for i in select(total)]
    if not indices or min(indices) < 0 or max(indices) >= total:
        raise ConfigError(f"{name}: frame selection {indices[:4]}... outside the clip's {total} frames")
    return indices


def _pick(kept: dict[int, np.ndarray], indices: list[int] | None, name: str) -> list[np.ndarray]:
    """The kept frames in the order of ``indices`` (all of them in decoding order if None)."""
    if indices is None:
        return list(kept.values())
    missing = sorted(set(indices) - set(kept))
    if missing:
        raise InputError(f"{name}: video is damaged or truncated (frame {missing[0]} could not be decoded)")
    return [kept[i] for i in indices]


def read_image(path: PathLike) -> np.ndarray:
    """Read a PNG/JPEG/WebP/BMP image as uint8 ``(H, W, 3)`` RGB.

    EXIF orientation is applied, transparency is composited over white and grayscale is
    expanded to three channels.
    """
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{name}: file does not exist")
    if p.is_dir():
        raise InputError(f"{name}: is a folder, expected an image file")
    ext = p.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InputError(
            f"{name}: unsupported extension {ext or '(none)'!r} "
            f"(supported: {_join(IMAGE_EXTENSIONS)})"
        )
    try:
        with Image.open(p) as img:
            img.load()
            return _pil_to_rgb(ImageOps.exif_transpose(img))
    except Image.DecompressionBombError:
        raise InputError(f"{name}: image is too large to decode safely") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError(f"{name}: cannot decode image (not an image file?)") from None


def natural_sort_key(name: str) -> list[Any]:
    """Sort key that orders embedded numbers by value: ``f2`` < ``f10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (hidden files skipped), in natural order."""
    files = [
        f
        for f in Path(folder).iterdir()
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=lambda f: natural_sort_key(f.name))


def _read_frame_folder(
    folder: Path, name: str, max_frames: int | None, select: Callable[[int], Sequence[int]] | None = None
) -> tuple[np.ndarray, float]:
    files = list_frame_files(folder)
    if not files:
        raise InputError(f"{name}: folder contains no {_join(IMAGE_EXTENSIONS)} images")
    indices = _selection(select, len(files), name)
    files = files[:max_frames] if indices is None else [files[i] for i in indices]
    frames = [read_image(files[0])]
    for f in files[1:]:
        image = read_image(f)
        if image.shape != frames[0].shape:
            raise InputError(
                f"{f}: is {image.shape[1]}x{image.shape[0]} but {files[0].name} is "
                f"{frames[0].shape[1]}x{frames[0].shape[0]}; all frames must have the same size"
            )
        frames.append(image)
    return np.stack(frames), DEFAULT_FPS


def _read_gif(
    path: Path, name: str, max_frames: int | None, select: Callable[[int], Sequence[int]] | None = None
) -> tuple[np.ndarray, float]:
    """Decode GIF frames; Pillow composites partial frames and applies disposal."""
    kept: dict[int, np.ndarray] = {}
    durations: list[float] = []
    try:
        with Image.open(path) as img:
            indices = _selection(select, int(getattr(img, "n_frames", 1)), name)
            wanted, last = (set(indices), max(indices)) if indices is not None else (None, -1)
            for i, frame in enumerate(ImageSequence.Iterator(img)):
                if wanted is None or i in wanted:
                    kept[i] = _pil_to_rgb(frame)
                durations.append(float(frame.info.get("duration") or 0))
                if max_frames is not None and len(kept) >= max_frames:
                    break
                if wanted is not None and i >= last:
                    break
    except Image.DecompressionBombError:
        raise InputError(f"{name}: GIF is too large to decode safely") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise InputError(f"{name}: cannot decode GIF (not a GIF file?)") from None
    if not kept:
        raise InputError(f"{name}: contains no frames")
    positive = [d for d in durations if d > 0]
    fps = 1000.0 / float(np.mean(positive)) if positive else DEFAULT_FPS
    return np.stack(_pick(kept, indices, name)), fps


def _read_video_file(
    path: Path, name: str, max_frames: int | None, select: Callable[[int], Sequence[int]] | None = None
) -> tuple[np.ndarray, float]:
    """Decode with PyAV; only if PyAV cannot decode a single frame, try the ffmpeg binary of imageio.

    A file PyAV stops decoding part-way (damaged or cut short) is an error, not a shorter clip.
    """
    try:
        frames, fps = _decode_pyav(path, name, max_frames, select)
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - PyAV cannot open or decode this file: another decoder may
        frames, fps = [], 0.0
    if not frames:
        try:
            frames, fps = _decode_imageio_ffmpeg(path, name, max_frames, select)
        except InputError:
            raise
        except Exception:  # noqa: BLE001 - both decoders failed: report the file as unreadable
            raise InputError(f"{name}: cannot decode video (damaged, truncated, or not a video file)") from None
    if not frames:
        raise InputError(f"{name}: contains no video frames")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise InputError(f"{name}: frame size changes during the video, which is not supported")
    return np.stack(frames), fps if fps > 0 else DEFAULT_FPS


def _decode_pyav(
    path: Path, name: str, max_frames: int | None, select: Callable[[int], Sequence[int]] | None = None
) -> tuple[list[np.ndarray], float]:
    indices = None
    if select is not None:
        indices = _selection(select, _count_frames(path, name), name)
    wanted, last = (set(indices), max(indices)) if indices is not None else (None, -1)
    kept: dict[int, np.ndarray] = {}
    decoded = 0
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise InputError(f"{name}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        expected = _expected_frames(container, stream)
        try:
            for i, frame in enumerate(container.decode(stream)):
                decoded = i + 1
                if wanted is None or i in wanted:
                    kept[i] = _apply_rotation(frame.to_ndarray(format="rgb24"), frame.rotation)
                if max_frames is not None and len(kept) >= max_frames:
                    break
                if wanted is not None and i >= last:
                    break
        except av.error.FFmpegError:
            if not decoded:
                raise  # not a single frame: the caller tries the other decoder
            raise InputError(f"{name}: video is damaged or truncated (decoding failed after frame {decoded})") from None
        if indices is None and max_frames is None and expected and decoded < _TRUNCATED * expected:
            raise InputError(f"{name}: video is truncated ({decoded} of the {expected} frames its header announces)")
    return _pick(kept, indices, name), float(rate) if rate else 0.0


#: a file whose frames fall short of this share of what its header announces is cut short
_TRUNCATED = 0.9


def _expected_frames(container: Any, stream: Any) -> int:
    """Frames the file's header announces (0 when it says nothing usable)."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:  # the file's duration is the video's
        seconds = container.duration / av.time_base
    else:
        return 0
    return int(round(seconds * float(rate))) if rate else 0


def _count_frames(path: Path, name: str) -> int:
    """Frames in the first video stream, counted from its packets without decoding them."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise InputError(f"{name}: has no video stream")
        stream = container.streams.video[0]
        try:
            count = sum(1 for packet in container.demux(stream) if packet.size)
        except av.error.FFmpegError:
            raise InputError(f"{name}: video is damaged or truncated (unreadable data)") from None
        expected = _expected_frames(container, stream)
    if not count:
        raise InputError(f"{name}: contains no video frames")
    if expected and count < _TRUNCATED * expected:
        raise InputError(f"{name}: video is truncated ({count} of the {expected} frames its header announces)")
    return count


def _apply_rotation(image: np.ndarray, degrees: float | int | None) -> np.ndarray:
    """Apply display-matrix rotation (counter-clockwise degrees) in quarter turns."""
    quarter_turns = int(round((degrees or 0) / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k=quarter_turns)) if quarter_turns else image


def _decode_imageio_ffmpeg(
    path: Path, name: str, max_frames: int | None, select: Callable[[int], Sequence[int]] | None = None
) -> tuple[list[np.ndarray], float]:
    import imageio_ffmpeg

    indices = None
    if select is not None:
        indices = _selection(select, imageio_ffmpeg.count_frames_and_secs(str(path))[0], name)
    wanted, last = (set(indices), max(indices)) if indices is not None else (None, -1)
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = reader.__next__()
    width, height = meta["size"]
    kept: dict[int, np.ndarray] = {}
    try:
        for i, buffer in enumerate(reader):
            if wanted is None or i in wanted:
                kept[i] = np.frombuffer(buffer, np.uint8).reshape(height, width, 3).copy()
            if max_frames is not None and len(kept) >= max_frames:
                break
            if wanted is not None and i >= last:
                break
    finally:
        reader.close()
    return _pick(kept, indices, name) if kept else [], float(meta.get("fps") or 0.0)


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any Pillow image to uint8 RGB; transparency is composited over white."""
    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img, dtype=np.float64)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0
        gray = np.clip(np.round(values / scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


# --------------------------------------------------------------------------------------------
# Array layouts
# --------------------------------------------------------------------------------------------


def to_uint8_frames(x: Any) -> np.ndarray:
    """Convert a clip to uint8 ``(F, H, W, 3)`` RGB.

    Accepted inputs:

    * uint8 array or tensor ``(F, H, W, 3)`` - returned as is;
    * float numpy array ``(F, H, W, 3)`` with values in ``[0, 1]``;
    * float torch tensor ``(C, F, H, W)`` with ``C == 3`` and values in ``[-1, 1]`` (the
      layout produced by :func:`motiontune.data.frames.prepare_video`), optionally with a
      leading batch dimension of size 1.

    Float values outside the range are clipped. Raises :class:`ConfigError` when the layout
    cannot be recognised or is ambiguous.
    """
    array, is_torch = _as_numpy(x)
    if is_torch and array.ndim == 5:
        if array.shape[0] != 1:
            raise ConfigError(f"cannot write a batch of {array.shape[0]} clips as one video")
        array = array[0]
    if array.ndim != 4:
        raise ConfigError(f"expected a 4-D clip, got shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        return _require_channels_last(array, "(F, H, W, 3)")
    if not np.issubdtype(array.dtype, np.floating):
        raise ConfigError(f"clip dtype {array.dtype} is not supported (use uint8 or float)")
    if is_torch:
        if array.shape[0] != 3 or array.shape[-1] == 3:
            raise ConfigError(
                f"float tensors must have layout (3, F, H, W), got shape {tuple(array.shape)}"
            )
        return _float_to_uint8(np.moveaxis(array, 0, -1), low=-1.0)
    return _float_to_uint8(_require_channels_last(array, "(F, H, W, 3)"), low=0.0)


def to_uint8_image(x: Any) -> np.ndarray:
    """Convert an image to uint8 ``(H, W, 3)`` RGB.

    Accepted inputs: uint8 ``(H, W, 3)``; float numpy ``(H, W, 3)`` in ``[0, 1]``; float torch
    ``(3, H, W)`` in ``[-1, 1]`` (as produced by :func:`motiontune.data.frames.prepare_image`).
    """
    array, is_torch = _as_numpy(x)
    if array.ndim != 3:
        raise ConfigError(f"expected a 3-D image, got shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        return _require_channels_last(array[None], "(H, W, 3)")[0]
    if not np.issubdtype(array.dtype, np.floating):
        raise ConfigError(f"image dtype {array.dtype} is not supported (use uint8 or float)")
    if is_torch:
        if array.shape[0] != 3 or array.shape[-1] == 3:
            raise ConfigError(
                f"float tensors must have layout (3, H, W), got shape {tuple(array.shape)}"
            )
        return _float_to_uint8(np.moveaxis(array, 0, -1), low=-1.0)
    return _float_to_uint8(_require_channels_last(array[None], "(H, W, 3)")[0], low=0.0)


def _as_numpy(x: Any) -> tuple[np.ndarray, bool]:
    if isinstance(x, np.ndarray):
        return x, False
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(x, torch.Tensor):
        tensor = x.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        return tensor.numpy(), True
    raise ConfigError(f"expected a numpy array or torch tensor, got {type(x).__name__}")


def _require_channels_last(array: np.ndarray, layout: str) -> np.ndarray:
    if array.shape[-1] != 3:
        raise ConfigError(f"expected layout {layout}, got shape {tuple(array.shape)}")
    return array


def _float_to_uint8(array: np.ndarray, low: float) -> np.ndarray:
    finite = np.nan_to_num(array.astype(np.float32), nan=low, posinf=1.0, neginf=low)
    if finite.size and float(finite.max()) > 2.0:
        raise ConfigError(
            f"float values go up to {float(finite.max()):.1f}; expected the range [{low:g}, 1] "
            "(pass uint8 for 0..255 data)"
        )
    unit = (np.clip(finite, low, 1.0) - low) / (1.0 - low)
    return np.round(unit * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_video(frames: Any, path: PathLike, fps: float = DEFAULT_FPS, crf: int = 18) -> Path:
    """Write a clip as .mp4/.mov/.mkv (H.264, yuv420p), .webm (VP9) or .gif (loops forever).

    ``frames`` may be any layout accepted by :func:`to_uint8_frames`. H.264/VP9 in yuv420p
    need even sizes, so odd heights/widths are padded by repeating the last row/column.
    ``crf`` sets the encoder quality (lower is better). Returns the written path.
    """
    clip = to_uint8_frames(frames)
    if clip.shape[0] == 0:
        raise ConfigError("cannot write a video with zero frames")
    if not fps > 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    target = Path(path)
    ext = target.suffix.lower()
    if ext not in WRITE_VIDEO_EXTENSIONS:
        raise ConfigError(
            f"{target}: cannot write {ext or 'files without extension'!r} videos "
            f"(supported: {_join(WRITE_VIDEO_EXTENSIONS)})"
        )
    with _atomic_target(target) as tmp:
        if ext in GIF_EXTENSIONS:
            _write_gif(clip, tmp, fps)
        else:
            _encode_video(clip, tmp, fps, ext, crf)
    return target


def write_frames(frames: Any, folder: PathLike, prefix: str = "frame_") -> list[Path]:
    """Write each frame as ``{prefix}0000.png``, ``{prefix}0001.png``, ... inside ``folder``.

    The folder is created if needed. Older ``{prefix}NNNN.png`` files beyond the new frame
    count are removed so that reading the folder back yields exactly this clip.
    """
    clip = to_uint8_frames(frames)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(max(len(clip) - 1, 0))))
    written = [write_image(f, out / f"{prefix}{i:0{digits}d}.png") for i, f in enumerate(clip)]
    _remove_stale_frames(out, prefix, keep={p.name for p in written})
    return written


def write_image(image: Any, path: PathLike) -> Path:
    """Write one image (layouts of :func:`to_uint8_image`) as PNG/JPEG/WebP/BMP, atomically."""
    rgb = to_uint8_image(image)
    target = Path(path)
    ext = target.suffix.lower()
    if ext not in _PIL_FORMATS:
        raise ConfigError(
            f"{target}: cannot write {ext or 'files without extension'!r} images "
            f"(supported: {_join(IMAGE_EXTENSIONS)})"
        )
    options: dict[str, Any] = {"quality": 95} if _PIL_FORMATS[ext] in ("JPEG", "WEBP") else {}
    with _atomic_target(target) as tmp:
        Image.fromarray(rgb, "RGB").save(tmp, format=_PIL_FORMATS[ext], **options)
    return target


@contextmanager
def _atomic_target(target: Path) -> Iterator[Path]:
    """Yield a hidden temporary path next to ``target``; move it into place on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _remove_stale_frames(folder: Path, prefix: str, keep: set[str]) -> None:
    pattern = re.compile(re.escape(prefix) + r"\d+\.png")
    for f in folder.iterdir():
        if f.name not in keep and pattern.fullmatch(f.name) and f.is_file():
            f.unlink()


def _write_gif(clip: np.ndarray, path: Path, fps: float) -> None:
    # GIF stores delays in hundredths of a second.
    duration_ms = max(10, int(round(100.0 / fps)) * 10)
    images = [Image.fromarray(frame, "RGB") for frame in clip]
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0
    )


def _encode_video(clip: np.ndarray, path: Path, fps: float, ext: str, crf: int) -> None:
    container_format, codec = _ENCODERS[ext]
    even = _pad_to_even(clip)
    if codec in av.codecs_available:
        _encode_pyav(even, path, fps, container_format, codec, crf)
    else:
        _encode_imageio_ffmpeg(even, path, fps, codec, crf)


def _pad_to_even(clip: np.ndarray) -> np.ndarray:
    pad_h, pad_w = clip.shape[1] % 2, clip.shape[2] % 2
    if not (pad_h or pad_w):
        return clip
    return np.pad(clip, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _encode_pyav(
    clip: np.ndarray, path: Path, fps: float, container_format: str, codec: str, crf: int
) -> None:
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = clip.shape[2], clip.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = _codec_options(codec, crf)
        for frame in clip:
            _mux(container, stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        _mux(container, stream.encode())


def _mux(container: Any, packets: Any) -> None:
    for packet in packets:
        container.mux(packet)


def _codec_options(codec: str, crf: int) -> dict[str, str]:
    if codec == "libvpx-vp9":
        return {"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8"}
    return {"crf": str(crf), "preset": "medium"}


def _encode_imageio_ffmpeg(clip: np.ndarray, path: Path, fps: float, codec: str, crf: int) -> None:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(
        str(path),
        (clip.shape[2], clip.shape[1]),
        fps=fps,
        codec=codec,
        pix_fmt_out="yuv420p",
        macro_block_size=1,
        output_params=["-crf", str(crf)],
    )
    writer.send(None)
    for frame in clip:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def _join(items: tuple[str, ...]) -> str:
    return " ".join(items)


__all__ = [
    "DEFAULT_FPS",
    "IMAGE_EXTENSIONS",
    "READ_VIDEO_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "WRITE_VIDEO_EXTENSIONS",
    "VideoClip",
    "list_frame_files",
    "natural_sort_key",
    "read_image",
    "read_video",
    "to_uint8_frames",
    "to_uint8_image",
    "write_frames",
    "write_image",
    "write_video",
]

