"""The timestep probe on tiny models: inversion, the caption schedule, the grid, plots and the CLI."""

import json

import numpy as np
import pytest
import torch

from motiontune.backbones import load_backbone
from motiontune.errors import ConfigError
from motiontune.probe import (
    Probe,
    ProbeConfig,
    edit_resample,
    grid_pairs,
    reconstruct,
    run_probe,
    suggest_tau,
    tau_values,
    uses_edit_caption,
)
from motiontune.testing.tiny import tiny_families

FAMILIES = tiny_families()
CAPTION = "a red circle moves left on a black background"
EDIT = "a blue square moves left on a black background"
STEPS = 3


def tiny_size(spec):
    rule = spec.frame_rule
    frames = rule.fixed if rule.fixed is not None else (5 if rule.k == 4 else 4)
    m = max(spec.size_multiple, 16)
    return frames, m, m


def reference_video(frames, size):
    """A toy-world clip: a red circle moving left on black, uint8 (F, H, W, 3)."""
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(frames):
        cx = size * (0.7 - 0.4 * i / max(frames - 1, 1))
        video[i][(xx - cx) ** 2 + (yy - size / 2) ** 2 <= (size / 5) ** 2] = (220, 30, 30)
    return video


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from motiontune.testing.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), "a red blue circle square moves left on black background".split())


def test_caption_schedule_and_grid():
    assert tau_values(500) == [0.0, 500.0, 1000.0]
    assert tau_values(300) == [0.0, 300.0, 600.0, 900.0, 1000.0]
    assert sorted(grid_pairs(500)) == [(500.0, 0.0), (1000.0, 0.0), (1000.0, 500.0)]
    assert len(grid_pairs(100)) == 55 and all(s > e for s, e in grid_pairs(100))
    # c' on [tau_end, tau_start): the original caption keeps t >= tau_start
    assert uses_edit_caption(0.0, 700, 0) and uses_edit_caption(699.9, 700, 0)
    assert not uses_edit_caption(700.0, 700, 0) and not uses_edit_caption(800.0, 700, 0)
    assert not uses_edit_caption(100.0, 700, 200)
    assert not any(uses_edit_caption(t, 500, 500) for t in np.linspace(0, 1000, 101))
    for bad in (0, -100, 1001, 2.5):
        with pytest.raises(ConfigError, match="grid step"):
            ProbeConfig(grid_step=bad)
    with pytest.raises(ConfigError, match="start"):
        ProbeConfig(start="middle")


@pytest.mark.parametrize("family", FAMILIES)
def test_inversion_reconstruction_and_empty_interval(family, tiny_model_dir):
    spec = load_backbone(tiny_model_dir(family))
    f, h, w = tiny_size(spec)
    pixels = torch.from_numpy(reference_video(f, h)).permute(3, 0, 1, 2).float() / 127.5 - 1
    rec = reconstruct(spec, pixels, CAPTION, STEPS)
    inv = rec.inversion
    assert np.isfinite(rec.psnr) and np.isfinite(rec.vae_psnr)
    assert rec.pixels.shape == (1, 3, f, h, w)
    # one latent per grid timestep, plus the clean one
    assert len(inv.timesteps) == STEPS and len(inv.latents) == STEPS + 1 and len(rec.states) == STEPS
    assert inv.timesteps == sorted(inv.timesteps, reverse=True)
    assert inv.info["method"] == ("flow euler" if spec.schedule.prediction_type == "flow" else "ddim")
    assert all(torch.isfinite(z).all() for z in inv.latents)
    assert torch.equal(rec.states[0], inv.noise)
    t1 = inv.timesteps[1]
    assert inv.step_index(t1 + 1e-3) == 1 and inv.step_index(t1) == 2 and inv.latent_at(t1) is inv.latents[2]
    assert inv.step_index(0.0) == STEPS
    # no edit interval: exactly the reconstruction
    same = edit_resample(spec, inv, CAPTION, EDIT, 500.0, 500.0)
    assert torch.equal(same, rec.latents)
    # the grid's shared-prefix shortcut gives exactly the full resampling from T
    probe = Probe(spec, pixels, CAPTION, EDIT, ProbeConfig(grid_step=500, num_inference_steps=STEPS, num_frames=f, height=h, width=w))
    probe._recon = rec
    tau_start = (inv.timesteps[0] + inv.timesteps[1]) / 2  # the edit starts at the second step
    full = edit_resample(spec, inv, CAPTION, EDIT, tau_start, 0.0)
    assert torch.equal(probe.output_latents(tau_start, 0.0), full)
    assert not torch.equal(full, rec.latents), "the edited caption must change the output"


def test_probe_grid_json_and_plots(tiny_model_dir, clip_dir, tmp_path):
    import matplotlib.image as mpimg

    spec = load_backbone(tiny_model_dir("wan"))
    video = reference_video(5, 16)
    cfg = ProbeConfig(grid_step=500, num_inference_steps=STEPS, num_frames=5, height=16, width=16, save_videos=True)
    result = run_probe(spec, video, CAPTION, EDIT, cfg, clip=clip_dir, output_dir=str(tmp_path))
    data = json.loads((tmp_path / "probe.json").read_text())
    pairs = {(r["tau_start"], r["tau_end"]) for r in data["grid"]}
    assert pairs == set(grid_pairs(500)) and len(data["grid"]) == 3
    assert all(r["tau_start"] > r["tau_end"] for r in data["grid"])
    assert data["appearance_metric"] == "clip_change"
    for r in data["grid"]:
        assert {"motion", "appearance", "clip_score", "clip_change", "subject_match", "subject_match_change"} <= set(r)
        assert r["appearance"] == pytest.approx(r["clip_score"] - data["reference"]["clip_score"])
    assert [r["tau_start"] for r in data["tradeoff"]] == [500.0, 1000.0]
    assert np.isfinite(data["inversion"]["psnr"]) and data["inversion"]["trajectory_length"] == STEPS + 1
    assert "tau" in data["suggestion"] and data["caption_schedule"].startswith("c for t >= tau_start")
    for name in ("heatmap_motion.png", "heatmap_appearance.png", "tradeoff.png"):
        image = mpimg.imread(tmp_path / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert (tmp_path / "videos" / "reconstruction.mp4").is_file()
    assert result.suggestion == data["suggestion"] or result.suggestion["tau"] == data["suggestion"]["tau"]


def test_suggest_tau_rule():
    def row(s, motion, appearance):
        return {"tau_start": s, "tau_end": 0.0, "motion": motion, "appearance": appearance}

    curve = [row(100, 0.95, 1.0), row(300, 0.93, 4.0), row(500, 0.9, 9.0), row(700, 0.88, 9.5),
             row(900, 0.5, 10.0), row(1000, 0.3, 10.5)]
    s = suggest_tau(curve, reconstruction_motion=1.0, appearance_available=True)
    assert s["tau"] == 500 and s["motion_threshold"] == pytest.approx(0.9)  # 700 loses motion, 300 edits too little
    assert suggest_tau(curve, 1.0, True, motion_threshold=0.85)["tau"] == 700
    assert suggest_tau(curve, 1.0, True, appearance_fraction=0.9, motion_fraction=0.95)["tau"] is None
    assert suggest_tau(curve, 1.0, False)["reason"].startswith("no appearance score")
    assert suggest_tau([row(500, 0.9, -1.0)], 1.0, True)["tau"] is None
    assert suggest_tau(curve, float("nan"), True)["tau"] is None


def test_probe_cli_end_to_end(tiny_model_dir, tmp_path, capsys):
    from motiontune.cli import main
    from motiontune.data.video_io import write_video

    video = write_video(reference_video(5, 16), tmp_path / "ref.gif", fps=8)
    out = tmp_path / "probe"
    rc = main([
        "probe", "--backbone", tiny_model_dir("wan"), "--video", str(video), "--caption", CAPTION,
        "--edit-caption", EDIT, "--grid-step", "500", "--steps", "2", "--num-frames", "5", "--height", "16",
        "--width", "16", "--output", str(out), "--quiet", "--device", "cpu",
    ])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "reconstruction PSNR" in printed and "suggested tau" in printed
    data = json.loads((out / "probe.json").read_text())
    assert data["appearance_metric"] == "subject_match_change" and len(data["grid"]) == 3
    assert data["video"] == str(video)
    for name in ("heatmap_motion.png", "heatmap_appearance.png", "tradeoff.png"):
        assert (out / name).stat().st_size > 0


def test_probe_cli_errors(tiny_model_dir, tmp_path, capsys):
    from motiontune.cli import main
    from motiontune.data.video_io import write_video

    base = ["probe", "--backbone", tiny_model_dir("wan"), "--caption", CAPTION, "--edit-caption", EDIT,
            "--output", str(tmp_path / "o")]
    assert main(base + ["--video", str(tmp_path / "missing.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.mp4" in err and "no such video" in err
    video = write_video(reference_video(5, 16), tmp_path / "ref.gif", fps=8)
    assert main(base + ["--video", str(video), "--grid-step", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "grid step" in err
    assert main(["probe", "--video", str(video)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    assert "example:" in capsys.readouterr().out
