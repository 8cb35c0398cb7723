"""The command line end to end on a tiny Wan saved in a folder: train, then generate."""

import json
import subprocess
import sys

import numpy as np
import pytest

from motiontune.cli import main
from motiontune.data.video_io import read_video, write_video


@pytest.fixture()
def reference(tmp_path):
    frames = np.zeros((12, 32, 32, 3), np.uint8)
    for i in range(12):
        frames[i, 10:20, 2 * i : 2 * i + 8] = (255, 0, 0)
    path = tmp_path / "ref.mp4"
    write_video(frames, path)
    return str(path)


def test_train_then_generate(tiny_model_dir, reference, tmp_path, capsys):
    model = tiny_model_dir("wan")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"backbone: {model}\nsteps: 50\nrank: 4\nnum_frames: 9\nheight: 32\nwidth: 32\nlr: 0.001\n")
    out = tmp_path / "run"
    # flags override the file: steps 3, not 50
    rc = main(["train", "--config", str(cfg), "--video", reference, "--caption", "a red circle moves right",
               "--steps", "3", "--output", str(out), "--quiet", "--train-timesteps", "500:1000"])
    assert rc == 0
    meta = json.loads((out / "motiontune.json").read_text())
    assert meta["training"]["steps"] == 3 and meta["training"]["learning_rate"] == 0.001
    assert meta["config"]["rank"] == 4 and meta["config"]["train_timesteps"]["low"] == 500
    assert meta["size"] == [9, 32, 32]
    rc = main(["generate", "--adapter", str(out), "--prompt", "a dog moves right", "--prompt", "a cat",
               "--steps", "2", "--format", "mp4,gif", "--output", str(tmp_path / "gen"), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert len([p for p in printed if p.endswith((".mp4", ".gif"))]) == 4
    clip = read_video(tmp_path / "gen" / "00-a-dog-moves-right.mp4")
    assert clip.frames.shape == (9, 32, 32, 3)
    assert (tmp_path / "gen" / "01-a-cat.txt").read_text() == "a cat\n"  # the prompt beside each clip
    # eval reads those prompts back; one row per clip although each was written as mp4 and gif
    rc = main(["eval", "--video", str(tmp_path / "gen"), "--metrics", "temporal_flickering", "--json", str(tmp_path / "ev.json")])
    assert rc == 0
    rows = json.loads((tmp_path / "ev.json").read_text())["videos"]
    assert [r["prompt"] for r in rows] == ["a dog moves right", "a cat"]
    # the toy metrics need a prompt: a clip without one is a one-line error
    (tmp_path / "gen" / "01-a-cat.txt").unlink()
    capsys.readouterr()
    assert main(["eval", "--video", str(tmp_path / "gen" / "01-a-cat.mp4"), "--toy", "--metrics", "temporal_flickering"]) != 0
    assert "no prompt for the toy metrics" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--video", "x.mp4", "--caption", "c", "--output", "o"], "needs --backbone"),
        (["generate", "--prompt", "x"], "needs --adapter"),
        (["train", "--backbone", "nonexistent/dir/model", "--video", __file__, "--caption", "c", "--output", "o"], "no such model folder"),
        (["train", "--backbone", "nonexistent/dir/model", "--video", "a.mp4", "--caption", "c", "--output", "o"], "a.mp4: no such file"),
        (["train", "--bogus"], "unrecognized arguments"),
        (["train", "--config", "/no/such.yaml"], "config file not found"),
    ],
)
def test_user_mistakes_are_one_line_errors(argv, message, capsys):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_video_keeps_earlier_outputs(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("saved before")
    rc = main(["train", "--backbone", tiny_model_dir("wan"), "--video", str(bad), "--caption", "c", "--output", str(out),
               "--num-frames", "9", "--height", "32", "--width", "32"])
    assert rc == 2
    assert "bad.mp4" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "saved before"


def test_console_script_help_shows_example():
    proc = subprocess.run([sys.executable, "-m", "motiontune.cli", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "example:" in proc.stdout and "motiontune train --backbone" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "motiontune.cli", "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for word in ("wan", "cogvideox", "hunyuan_video", "latte", "unet3d", "lora", "wan2.1-1.3b"):
        assert word in proc.stdout
