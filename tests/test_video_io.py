"""Reading/writing clips and images, and preparing them as backbone inputs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from motiontune.data import video_io
from motiontune.data.frames import (
    as_frame_rule,
    check_frame_count,
    nearest_valid_frame_count,
    prepare_image,
    prepare_video,
    resize_and_crop,
    sample_frames,
    sample_indices,
    valid_frame_count,
)
from motiontune.data.video_io import (
    VideoClip,
    read_image,
    read_video,
    to_uint8_frames,
    write_frames,
    write_image,
    write_video,
)
from motiontune.errors import ConfigError, InputError

NUM_FRAMES, HEIGHT, WIDTH = 24, 48, 64


def moving_square(
    num_frames: int = NUM_FRAMES, height: int = HEIGHT, width: int = WIDTH
) -> np.ndarray:
    """White 12x12 square moving right on black, plus a static green block (tests colour)."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        x = (2 * i) % (width - 12)
        frames[i, 18:30, x : x + 12] = 255
    frames[:, -8:, :8] = (40, 200, 90)
    return frames


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return moving_square()


def assert_one_line_input_error(excinfo: pytest.ExceptionInfo, name: str) -> None:
    message = str(excinfo.value)
    assert excinfo.type is InputError
    assert name in message
    assert "\n" not in message


def encode_with_pyav(frames: np.ndarray, path: Path, fmt: str, codec: str, pix_fmt: str) -> None:
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=Fraction(12))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---------------------------------------------------------------------------- round trips


def test_mp4_round_trip(tmp_path: Path, clip: np.ndarray) -> None:
    path = write_video(clip, tmp_path / "clip.mp4", fps=8)
    video = read_video(path)
    assert video.frames.dtype == np.uint8
    assert video.frames.shape == clip.shape
    assert video.fps == pytest.approx(8.0)
    assert np.abs(video.frames.astype(int) - clip).mean() < 8
    # Frame order and motion survive: the square's left edge moves 2 px per frame.
    left_edges = (video.frames[:, 24, :, 0] > 128).argmax(axis=1)
    np.testing.assert_array_equal(left_edges, 2 * np.arange(NUM_FRAMES))


def test_mp4_max_frames_keeps_the_start(tmp_path: Path, clip: np.ndarray) -> None:
    path = write_video(clip, tmp_path / "clip.mp4")
    video = read_video(path, max_frames=5)
    assert video.frames.shape[0] == 5
    assert np.abs(video.frames.astype(int) - clip[:5]).mean() < 8


def test_mp4_tiny_and_odd_sizes(tmp_path: Path) -> None:
    tiny = moving_square(9, 32, 32)
    assert read_video(write_video(tiny, tmp_path / "tiny.mp4")).frames.shape == (9, 32, 32, 3)
    odd = moving_square(9, 33, 31)
    back = read_video(write_video(odd, tmp_path / "odd.mp4")).frames
    assert back.shape == (9, 34, 32, 3)  # padded to even by repeating the last row/column
    assert np.abs(back[:, :33, :31].astype(int) - odd).mean() < 8


def test_gif_round_trip_composites_partial_frames(tmp_path: Path, clip: np.ndarray) -> None:
    path = write_video(clip, tmp_path / "clip.gif", fps=8)
    with Image.open(path) as img:
        assert img.info["loop"] == 0
        img.seek(1)
        # Later frames are stored as small changed regions, so reading must composite them.
        assert img.tile[0][1] != (0, 0, WIDTH, HEIGHT)
    video = read_video(path)
    assert video.frames.shape == clip.shape
    np.testing.assert_array_equal(video.frames, clip)
    assert video.fps == pytest.approx(1000 / 120)  # GIF delays are in 1/100 s


def test_gif_transparency_is_composited_over_white(tmp_path: Path) -> None:
    frames = [Image.new("RGBA", (16, 16), (0, 0, 0, 0)) for _ in range(3)]
    for i, frame in enumerate(frames):
        frame.paste((255, 0, 0, 255), (4 * i, 4, 4 * i + 4, 8))
    path = tmp_path / "sprite.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], disposal=2, duration=100)
    video = read_video(path)
    assert video.frames.shape == (3, 16, 16, 3)
    assert tuple(video.frames[2, 5, 9]) == (255, 0, 0)
    assert tuple(video.frames[2, 5, 1]) == (255, 255, 255)  # disposed square became background
    assert tuple(video.frames[0, 12, 12]) == (255, 255, 255)


def test_folder_round_trip_is_exact(tmp_path: Path, clip: np.ndarray) -> None:
    written = write_frames(clip, tmp_path / "frames")
    assert [p.name for p in written[:2]] == ["frame_0000.png", "frame_0001.png"]
    np.testing.assert_array_equal(read_video(tmp_path / "frames").frames, clip)
    # Writing a shorter clip replaces the older sequence instead of mixing with it.
    write_frames(clip[:3], tmp_path / "frames")
    np.testing.assert_array_equal(read_video(tmp_path / "frames").frames, clip[:3])


def test_folder_uses_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "unpadded"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(folder / f"frame_{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    reds = read_video(folder).frames[:, 0, 0, 0]
    assert list(reds) == [i * 20 for i in range(12)]


def test_folder_with_mismatched_size_names_the_odd_file(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(folder / f"f{i}.png")
    Image.new("RGB", (9, 8)).save(folder / "f3.png")
    with pytest.raises(InputError) as excinfo:
        read_video(folder)
    assert_one_line_input_error(excinfo, "f3.png")


@pytest.mark.parametrize(
    ("ext", "fmt", "codec", "pix_fmt"),
    [(".webm", "webm", "libvpx-vp9", "yuv420p"), (".mov", "mov", "mpeg4", "yuv420p")],
)
def test_reads_pyav_encoded_files(
    tmp_path: Path, clip: np.ndarray, ext: str, fmt: str, codec: str, pix_fmt: str
) -> None:
    path = tmp_path / f"clip{ext}"
    encode_with_pyav(clip, path, fmt, codec, pix_fmt)
    video = read_video(path)
    assert video.frames.shape == clip.shape
    assert video.fps == pytest.approx(12.0)
    assert np.abs(video.frames.astype(int) - clip).mean() < 8


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    frames = np.zeros((3, 16, 32, 3), np.uint8)
    frames[:, :4, :4] = 255  # top-left corner
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = 32, 16, "yuv420p"
        stream.set_display_rotation(90)  # counter-clockwise
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    video = read_video(path)
    assert video.frames.shape == (3, 32, 16, 3)
    assert video.frames[0, -4:, :4].mean() > 200  # top-left moved to bottom-left


def test_image_round_trip_and_conversions(tmp_path: Path, clip: np.ndarray) -> None:
    np.testing.assert_array_equal(read_image(write_image(clip[3], tmp_path / "a.png")), clip[3])
    Image.new("LA", (4, 4), (100, 255)).save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png").tolist() == [[[100] * 3] * 4] * 4
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (read_image(tmp_path / "clear.png") == 255).all()


# ---------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as excinfo:
        read_video(tmp_path / "nowhere.mp4")
    assert_one_line_input_error(excinfo, "nowhere.mp4")
    assert "does not exist" in str(excinfo.value)


def test_unsupported_extension_lists_supported(tmp_path: Path) -> None:
    (tmp_path / "clip.flv").write_bytes(b"\0")
    with pytest.raises(InputError) as excinfo:
        read_video(tmp_path / "clip.flv")
    assert_one_line_input_error(excinfo, "clip.flv")
    assert ".mp4" in str(excinfo.value) and ".gif" in str(excinfo.value)


def test_text_file_renamed_mp4(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 20)
    with pytest.raises(InputError) as excinfo:
        read_video(tmp_path / "notes.mp4")
    assert_one_line_input_error(excinfo, "notes.mp4")
    assert "cannot decode" in str(excinfo.value)


def test_text_file_renamed_png(tmp_path: Path) -> None:
    (tmp_path / "frame.png").write_text("hello")
    with pytest.raises(InputError) as excinfo:
        read_image(tmp_path / "frame.png")
    assert_one_line_input_error(excinfo, "frame.png")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty_frames").mkdir()
    with pytest.raises(InputError) as excinfo:
        read_video(tmp_path / "empty_frames")
    assert_one_line_input_error(excinfo, "empty_frames")


def test_too_short_clip_for_sampling(tmp_path: Path) -> None:
    path = write_video(moving_square(5), tmp_path / "short.mp4")
    with pytest.raises(InputError) as excinfo:
        sample_frames(read_video(path), 17)
    assert_one_line_input_error(excinfo, "short.mp4")
    assert "has 5 frames, 17 are needed" in str(excinfo.value)
    with pytest.raises(InputError) as excinfo:
        prepare_video(path, 17, 32, 32, frame_rule=(4, 1))
    assert_one_line_input_error(excinfo, "short.mp4")


# ---------------------------------------------------------------------------- writing


def test_atomic_writes_leave_no_temp_files(tmp_path: Path, clip: np.ndarray) -> None:
    write_video(clip, tmp_path / "a.mp4")
    write_video(clip, tmp_path / "a.mp4")  # overwrite in place
    write_video(clip, tmp_path / "b.gif")
    write_image(clip[0], tmp_path / "c.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.gif", "c.jpg"]


def test_atomic_writes_get_the_modes_of_plain_writes(tmp_path: Path, clip: np.ndarray) -> None:
    import os
    import stat

    from motiontune.utils.files import atomic_directory, atomic_write_text

    mask = os.umask(0o022)
    try:
        atomic_write_text(str(tmp_path / "a.json"), "{}")
        write_video(clip, tmp_path / "b.gif")
        with atomic_directory(str(tmp_path / "folder")) as tmp:
            (Path(tmp) / "x.txt").write_text("x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.gif").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
    mask = os.umask(0o027)
    try:
        atomic_write_text(str(tmp_path / "c.json"), "{}")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o640


def test_crash_during_write_keeps_old_file_and_no_temp(
    tmp_path: Path, clip: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = write_video(clip, tmp_path / "a.gif")
    before = target.read_bytes()

    def crash_halfway(frames: np.ndarray, path: Path, fps: float) -> None:
        path.write_bytes(b"GIF89a-half-written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(video_io, "_write_gif", crash_halfway)
    with pytest.raises(RuntimeError):
        write_video(clip, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.gif"]


def test_to_uint8_frames_layouts(clip: np.ndarray) -> None:
    floats = clip.astype(np.float32) / 255.0
    np.testing.assert_array_equal(to_uint8_frames(floats), clip)
    tensor = torch.from_numpy(floats).permute(3, 0, 1, 2) * 2 - 1  # (C, F, H, W) in [-1, 1]
    np.testing.assert_array_equal(to_uint8_frames(tensor), clip)
    np.testing.assert_array_equal(to_uint8_frames(tensor[None]), clip)
    with pytest.raises(ConfigError):
        to_uint8_frames(torch.zeros(3, 4, 5, 3))  # channels first or last? ambiguous
    with pytest.raises(ConfigError):
        to_uint8_frames(np.zeros((4, 5, 6, 2), np.uint8))


# ---------------------------------------------------------------------------- frames.py


def test_frame_rules() -> None:
    assert [n for n in range(1, 20) if valid_frame_count(n, 4, 1)] == [1, 5, 9, 13, 17]
    assert valid_frame_count(16, 1, 0) and not valid_frame_count(0, 1, 0)
    assert valid_frame_count(16, 0, 16) and not valid_frame_count(17, 0, 16)
    assert nearest_valid_frame_count(16, 4, 1) == 13
    assert nearest_valid_frame_count(16, 4, 1, mode="ceil") == 17
    assert nearest_valid_frame_count(15, 4, 1, mode="nearest") == 13
    assert nearest_valid_frame_count(16, 4, 1, mode="nearest") == 17
    with pytest.raises(ConfigError):
        nearest_valid_frame_count(3, 4, 0)  # no multiple of 4 at or below 3


def test_frame_rule_error_names_valid_counts() -> None:
    with pytest.raises(ConfigError) as excinfo:
        check_frame_count(16, (4, 1))
    assert str(excinfo.value) == (
        "num_frames=16 is not valid for this backbone: it needs 4k+1 frames (13, 17, ...)"
    )
    with pytest.raises(ConfigError, match="4k\\+1"):
        prepare_video(np.zeros((20, 8, 8, 3), np.uint8), 16, 8, 8, frame_rule=(4, 1))


def test_backbone_rule_objects_are_accepted() -> None:
    from motiontune.backbones.base import FrameRule

    assert as_frame_rule(FrameRule(k=4, r=1)) == (4, 1)
    assert as_frame_rule(FrameRule(fixed=16)) == (0, 16)
    with pytest.raises(ConfigError, match="exactly 16 frames"):
        check_frame_count(17, FrameRule(fixed=16))
    check_frame_count(17, FrameRule(k=4, r=1))


def test_sample_indices_modes() -> None:
    assert sample_indices(24, 4) == [0, 8, 15, 23]
    assert sample_indices(9, 5) == [0, 2, 4, 6, 8]
    assert sample_indices(24, 4, stride=3, start=2, mode="stride") == [2, 5, 8, 11]
    assert sample_indices(24, 3, start=5, mode="first") == [5, 6, 7]
    assert sample_indices(3, 5, allow_repeat=True) == [0, 1, 1, 2, 2]
    with pytest.raises(InputError, match="has 10 frames, 13 are needed"):
        sample_indices(10, 5, stride=3, mode="stride", name="walk.mp4")
    with pytest.raises(ConfigError):
        sample_indices(10, 5, mode="stride")  # stride missing


def test_sample_frames_picks_those_frames(clip: np.ndarray) -> None:
    video = VideoClip(frames=clip, fps=8.0, path="walk.mp4")
    picked = sample_frames(video, 4, stride=2, mode="stride")
    np.testing.assert_array_equal(picked, clip[[0, 2, 4, 6]])
    np.testing.assert_array_equal(sample_frames(clip, 2, mode="first"), clip[:2])


def test_resize_and_crop_shapes_and_centre(clip: np.ndarray) -> None:
    # Same height: the crop removes 8 columns on each side without resampling.
    np.testing.assert_array_equal(resize_and_crop(clip, 48, 48), clip[:, :, 8:56])
    marked = np.zeros((2, 48, 64, 3), np.uint8)
    marked[:, 20:28, 28:36] = (255, 0, 0)
    for mode in ("center_crop", "resize", "pad"):
        out = resize_and_crop(marked, 24, 24, mode=mode)
        assert out.shape == (2, 24, 24, 3) and out.dtype == np.uint8
        assert tuple(out[0, 12, 12]) == (255, 0, 0)
    padded = resize_and_crop(np.full((1, 48, 64, 3), 200, np.uint8), 64, 64, mode="pad")
    assert (padded[0, :8] == 0).all() and (padded[0, 8:56] == 200).all()
    assert resize_and_crop(clip[0], 96, 96).shape == (96, 96, 3)  # upscaling a single image


def test_prepare_video_tensor(tmp_path: Path, clip: np.ndarray) -> None:
    path = write_video(clip, tmp_path / "ref.mp4")
    x = prepare_video(path, 17, 32, 40, frame_rule=(4, 1))
    assert x.shape == (3, 17, 32, 40) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x.min() < -0.9 and x.max() > 0.9  # black background and white square survive
    y = prepare_video(path, 4, 32, 40, sampling="stride", stride=2)
    assert y.shape == (3, 4, 32, 40)


def test_prepare_image_tensor(tmp_path: Path, clip: np.ndarray) -> None:
    path = write_image(clip[0], tmp_path / "ref.png")
    x = prepare_image(path, 16, 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_allclose(prepare_image(clip[0], 48, 64)[:, 0, 0].numpy(), [-1, -1, -1])
