"""Tests of the toy world: vocabulary, captions, renderer, oracle and metrics."""

from __future__ import annotations

import dataclasses
import itertools

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from motiontune.errors import ConfigError, InputError
from motiontune.toyworld import (
    ALL_COLORS,
    BACKGROUNDS,
    BASE_MOTIONS,
    COLORS,
    HELDOUT_COLORS,
    HELDOUT_MOTIONS,
    MOTIONS,
    SHAPES,
    VOCABULARY,
    CaptionFields,
    MotionParams,
    SceneSpec,
    analyze,
    appearance_leakage,
    background_accuracy,
    caption,
    corrupt,
    dynamics,
    fit_motion,
    ground_truth,
    motion_accuracy,
    motion_direction_accuracy,
    motion_fidelity,
    oracle_accuracy,
    parse_caption,
    render,
    render_tensor,
    sample_scene,
    sample_scenes,
    save_video,
    score_video,
    subject_accuracy,
    subject_match,
    tensor_to_video,
    trajectory_correlation,
)
from motiontune.toyworld.world import SHAPE_EXTENT


def _scene(motion: str, seed: int = 0, **overrides: object) -> SceneSpec:
    split = "all"
    scene = sample_scene(seed, split, motions=[motion], shapes=["circle", "square", "diamond"])
    return dataclasses.replace(scene, **overrides)


def _other_subject(scene: SceneSpec) -> SceneSpec:
    """The same trajectory with another colour, shape and background."""
    return dataclasses.replace(
        scene,
        color="white" if scene.color != "white" else "red",
        shape="square" if scene.shape != "square" else "circle",
        background="checkered" if scene.background != "checkered" else "navy",
    )


# --- vocabulary, captions, scenes -------------------------------------------------------------


def test_caption_examples() -> None:
    assert caption(CaptionFields("red", "circle", "left", "black")) == "a red circle moves left on a black background"
    assert caption(CaptionFields("blue", "square", "still", "gray")) == "a blue square stays still on a gray background"
    assert caption(CaptionFields("orange", "triangle", "grow", "navy")) == (
        "an orange triangle grows on a navy background"
    )
    assert caption(CaptionFields("green", "circle", "figure_eight", "black")) == (
        "a green circle moves in a figure-eight on a black background"
    )
    assert caption(CaptionFields("yellow", "diamond", "zigzag", "checkered")) == (
        "a yellow diamond moves in a zigzag on a checkered background"
    )
    assert parse_caption("  A Yellow circle  orbits on a black background. ") == CaptionFields(
        "yellow", "circle", "orbit", "black"
    )


def test_captions_round_trip_for_every_combination() -> None:
    used: set[str] = set()
    for color, shape, motion, background in itertools.product(ALL_COLORS, SHAPES, MOTIONS, BACKGROUNDS):
        fields = CaptionFields(color, shape, motion, background)
        text = caption(fields)
        assert parse_caption(text) == fields
        used.update(text.split(" "))
    assert used == set(VOCABULARY)
    assert len(set(caption(CaptionFields("red", "circle", m, "black")) for m in MOTIONS)) == len(MOTIONS)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world",
        "a red blob moves left on a black background",
        "a magenta circle moves left on a black background",
        "a red circle dances on a black background",
        "a red circle moves left on a plaid background",
        "a red circle moves left",
        "a red circle moves left on a black wall",
    ],
)
def test_parse_caption_rejects_garbage(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_caption(text)


def test_scene_sampling_is_deterministic_and_validated() -> None:
    assert sample_scene(11) == sample_scene(11)
    assert sample_scene(11) != sample_scene(12)
    assert sample_scenes(5, seed=3) == sample_scenes(5, seed=3)
    scene = sample_scene(4, "all")
    assert SceneSpec.from_dict(scene.to_dict()) == scene
    with pytest.raises(ConfigError):
        SceneSpec("hexagon", "red", "black", "left")
    with pytest.raises(ConfigError):
        SceneSpec("circle", "red", "black", "left", size=1.5)
    with pytest.raises(ConfigError):
        sample_scene(0, split="everything")
    with pytest.raises(ConfigError):
        MotionParams(amplitude=-1.0)


def test_splits_keep_held_out_names_out_of_base() -> None:
    base = sample_scenes(400, seed=1, split="base")
    assert {s.motion for s in base} == set(BASE_MOTIONS)
    assert {s.color for s in base} == set(COLORS)
    held = sample_scenes(100, seed=1, split="heldout_motion")
    assert {s.motion for s in held} == set(HELDOUT_MOTIONS)
    assert {s.color for s in sample_scenes(50, seed=1, split="heldout_color")} == set(HELDOUT_COLORS)
    with pytest.raises(ConfigError):
        sample_scene(0, split="base", motions=["orbit"])
    with pytest.raises(ConfigError):
        sample_scene(0, split="base", colors=["pink"])


def test_subject_stays_inside_the_frame() -> None:
    for scene in sample_scenes(300, seed=2, split="all"):
        truth = ground_truth(scene, 33)
        left, right, top, bottom = SHAPE_EXTENT[scene.shape]
        x, y, size = truth.centers[:, 0], truth.centers[:, 1], truth.sizes
        assert np.all(x - left * size >= 0) and np.all(x + right * size <= 1), scene
        assert np.all(y - top * size >= 0) and np.all(y + bottom * size <= 1), scene


# --- rendering -------------------------------------------------------------------------------


def test_render_shapes_dtype_and_determinism() -> None:
    scene = sample_scene(7, "all")
    frames = render(scene)
    assert frames.shape == (17, 32, 32, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, render(scene))
    assert render(scene, 9, 64, 48).shape == (9, 64, 48, 3)
    assert render(scene, 33).shape == (33, 32, 32, 3)
    tensor = render_tensor(scene)
    assert tensor.shape == (3, 17, 32, 32) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= -1.0 and float(tensor.max()) <= 1.0
    assert np.array_equal(tensor_to_video(tensor), frames)
    with pytest.raises(ConfigError):
        render(scene, 0)


def test_render_matches_ground_truth_area_and_colours() -> None:
    scene = SceneSpec("square", "red", "gray", "still", size=0.25, anchor=(0.5, 0.5))
    frame = render(scene, 1, 64, 64)[0]
    assert tuple(frame[32, 32]) == (230, 40, 40)
    assert tuple(frame[2, 2]) == (128, 128, 128)
    covered = np.abs(frame.astype(float) - [128, 128, 128]).sum(-1) / np.abs(np.array([230, 40, 40]) - 128).sum()
    assert covered.sum() == pytest.approx(ground_truth(scene, 1, 64, 64).areas[0] * 64 * 64, rel=0.01)


def test_shape_contrast_marks_where_the_shapes_differ() -> None:
    from motiontune.toyworld.render import shape_contrast

    square = SceneSpec("square", "red", "gray", "still", size=0.25, anchor=(0.5, 0.5))
    contrast = shape_contrast(square, 1, 64, 64)[0]
    assert contrast.shape == (64, 64) and contrast.dtype == np.float32
    assert contrast[32, 32] == 0.0 and contrast[2, 2] == 0.0  # deep inside and far outside
    # the square's corner (side 0.89 x 16 px around the centre): no circle, diamond or triangle reaches it
    assert contrast[25, 25] > 0.9
    # the middle of its top edge: the circle covers it as well, the diamond and the triangle too
    assert contrast[25, 32] < 0.5
    # a circle in the same place is told from the square at the same corner, but less (the square is
    # one of three other shapes there)
    circle = shape_contrast(dataclasses.replace(square, shape="circle"), 1, 64, 64)[0]
    assert 0.2 < circle[25, 25] < 0.5
    assert float(contrast.min()) >= 0.0 and float(contrast.max()) <= 1.0


def test_save_video_round_trips(tmp_path) -> None:
    frames = render(sample_scene(3))
    gif = save_video(frames, tmp_path / "clip.gif")
    back = iio.imread(gif)[..., :3]
    assert back.shape == frames.shape and np.abs(back.astype(int) - frames).max() <= 2
    mp4 = save_video(frames, tmp_path / "clip.mp4", fps=8)
    back = iio.imread(mp4, plugin="pyav")
    assert back.shape == frames.shape and np.abs(back.astype(float) - frames).mean() < 8
    with pytest.raises(ConfigError):
        save_video(frames, tmp_path / "clip.avi")
    with pytest.raises(InputError):
        save_video(render(sample_scene(3), 5, 33, 33), tmp_path / "odd.mp4")


# --- oracle ----------------------------------------------------------------------------------


def test_oracle_accuracy_on_clean_renders() -> None:
    accuracy = oracle_accuracy(300, seed=0, split="all", num_frames=9)
    assert accuracy.color >= 0.99 and accuracy.shape >= 0.99 and accuracy.background >= 0.99
    assert accuracy.motion >= 0.99 and accuracy.motion_pattern >= 0.99 and accuracy.found == 1.0
    assert accuracy.centroid_error_px < 0.05


def test_oracle_is_robust_to_noise_and_blur() -> None:
    accuracy = oracle_accuracy(40, noise_std=10, blur=1.0, seed=9, split="all", num_frames=9)
    assert min(accuracy.color, accuracy.shape, accuracy.background) >= 0.95


@pytest.mark.parametrize("motion", BASE_MOTIONS)
def test_oracle_classifies_base_motions(motion: str) -> None:
    for seed in range(3):
        assert analyze(render(_scene(motion, seed))).motion == motion


@pytest.mark.parametrize("motion", HELDOUT_MOTIONS)
def test_fit_motion_names_held_out_motions(motion: str) -> None:
    for seed in range(3):
        analysis = analyze(render(_scene(motion, seed)))
        assert analysis.fit_motion().motion == motion
    with pytest.raises(ConfigError):
        fit_motion(np.zeros((1, 2)), np.ones(1))


def test_oracle_centroids_and_areas_match_ground_truth() -> None:
    for scene in sample_scenes(20, seed=5, split="all"):
        for frames, height, width in ((17, 32, 32), (9, 64, 48)):
            analysis = analyze(render(scene, frames, height, width))
            truth = ground_truth(scene, frames, height, width)
            error_px = np.abs(analysis.centers - truth.centers) * [width, height]
            assert analysis.found_frames.all()
            assert error_px.max() < 0.1
            np.testing.assert_allclose(analysis.areas, truth.areas, rtol=0.02)


def test_oracle_without_subject_and_bad_input() -> None:
    scene = sample_scene(1)
    empty = np.broadcast_to(render(scene)[:, :1, :1], (17, 32, 32, 3)).copy()
    analysis = analyze(empty)
    assert not analysis.found and analysis.color is None and analysis.shape is None
    assert analysis.background == scene.background
    assert dynamics(analysis) == 0.0
    assert motion_fidelity(analysis, render(scene)) == 0.0
    with pytest.raises(InputError):
        motion_fidelity(render(scene), analysis)
    with pytest.raises(InputError):
        analyze(render(scene).astype(np.float32))
    with pytest.raises(InputError):
        analyze(render(scene)[..., :2])


# --- metrics ---------------------------------------------------------------------------------


def test_motion_fidelity_same_motion_vs_different_motion() -> None:
    same, different = [], []
    for seed, motion in enumerate(MOTIONS):
        reference = _scene(motion, seed)
        ref_video = render(reference)
        assert motion_fidelity(ref_video, ref_video) == pytest.approx(1.0)
        same.append(motion_fidelity(render(_other_subject(reference)), ref_video))
    references = {m: analyze(render(_scene(m, 0))) for m in HELDOUT_MOTIONS}
    outputs = {m: analyze(render(_scene(m, 1))) for m in HELDOUT_MOTIONS}
    for first, second in itertools.permutations(HELDOUT_MOTIONS, 2):
        different.append(motion_fidelity(outputs[second], references[first]))
    assert min(same) > 0.95
    assert max(np.mean(different), np.median(different)) < 0.3
    left = render(_scene("left", 0))
    right = render(dataclasses.replace(_scene("left", 0), motion="right"))
    assert motion_fidelity(right, left) < -0.9


def test_trajectory_correlation() -> None:
    reference = _scene("orbit", 2)
    assert trajectory_correlation(render(_other_subject(reference)), render(reference)) > 0.95
    clockwise = dataclasses.replace(
        reference, motion_params=dataclasses.replace(reference.motion_params, sense=-reference.motion_params.sense)
    )
    assert trajectory_correlation(render(clockwise), render(reference)) < 0.7


def test_motion_accuracy_and_direction_accuracy() -> None:
    video = render(_scene("spiral", 3))
    assert motion_accuracy(video, "a red circle spirals on a black background") == 1.0
    assert motion_accuracy(video, "a red circle orbits on a black background") == 0.0
    down = render(_scene("down", 3))
    assert motion_direction_accuracy(down, "a red circle moves down on a black background") == 1.0
    assert motion_direction_accuracy(down, "a red circle moves up on a black background") == 0.0
    with pytest.raises(ConfigError):
        motion_direction_accuracy(down, "a red circle orbits on a black background")


def test_subject_and_background_accuracy() -> None:
    scene = SceneSpec("triangle", "pink", "brown", "right", anchor=(0.5, 0.5))
    video = render(scene)
    assert subject_accuracy(video, scene) == 1.0 and background_accuracy(video, scene.caption) == 1.0
    wrong_shape = dataclasses.replace(scene, shape="circle")
    match = subject_match(video, wrong_shape)
    assert match.color_match and not match.shape_match and subject_accuracy(video, wrong_shape) == 0.0
    assert background_accuracy(video, dataclasses.replace(scene, background="navy")) == 0.0


def test_appearance_leakage() -> None:
    reference = _scene("zigzag", 4, color="red", shape="circle", background="black")
    prompt = dataclasses.replace(reference, color="blue", background="gray")
    ref_video = render(reference)
    assert appearance_leakage(render(prompt), prompt, ref_video) == 0.0
    assert appearance_leakage(ref_video, prompt, ref_video) == 1.0
    half = dataclasses.replace(prompt, color="red")
    assert appearance_leakage(render(half), prompt, reference.caption) == pytest.approx(0.5)
    assert appearance_leakage(ref_video, reference, ref_video) == 0.0


def test_dynamics() -> None:
    still = render(_scene("still", 5))
    assert dynamics(still) < 1e-3
    assert dynamics(corrupt(still, noise_std=10)) < 5e-3
    assert dynamics(render(_scene("left", 5))) > 0.01
    assert dynamics(render(_scene("grow", 5))) > 0.005


def test_score_video_reports_every_metric() -> None:
    reference = _scene("bounce", 6)
    prompt = dataclasses.replace(reference, color="green" if reference.color != "green" else "red")
    scores = score_video(render(prompt), prompt, reference=render(reference))
    assert scores["subject_accuracy"] == 1.0 and scores["background_accuracy"] == 1.0
    assert scores["motion_accuracy"] == 1.0 and scores["appearance_leakage"] == 0.0
    assert scores["motion_fidelity"] > 0.95 and scores["trajectory_correlation"] > 0.95
    assert scores["dynamics"] > 0.01 and "motion_direction_accuracy" not in scores
    base = score_video(render(_scene("up", 6)), _scene("up", 6).caption)
    assert base["motion_direction_accuracy"] == 1.0 and "motion_fidelity" not in base
