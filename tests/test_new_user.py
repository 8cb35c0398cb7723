"""What a new user met without a word (issue 32, "Silent surprises"): unknown toy words, clips
squeezed silently, no progress under a log redirect, --help examples, eval's bare "n/a", adapters
tied to the training machine, and a slow --help / list."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import motiontune.api
from motiontune.cli import EXAMPLES, _load_extra_commands, build_parser, main
from motiontune.cli_shared import EXTRA_COMMANDS
from motiontune.data.video_io import write_video

SIZE = ["--num-frames", "5", "--height", "32", "--width", "32"]


def moving(n: int = 20, height: int = 32, width: int = 32) -> np.ndarray:
    """A red square moving right over grey, back at the left every 12 frames."""
    frames = np.full((n, height, width, 3), 30, np.uint8)
    for i in range(n):
        frames[i, 10:20, 2 * (i % 12) : 2 * (i % 12) + 8] = (250, 40, 40)
    return frames


@pytest.fixture()
def clip(tmp_path):
    return str(write_video(moving(), tmp_path / "ref.mp4"))


def no_model(*args, **kwargs):
    raise AssertionError("the model was loaded before the error")


# ------------------------------------------------------------------ 1. words outside the toy vocabulary


def test_unknown_prompt_words_are_named_once(tiny_toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOTIONTUNE_TOY_MODEL", tiny_toy)  # --backbone toy is the tiny toy architecture
    prompt = "a man dances in a park"
    argv = ["generate", "--backbone", "toy", "--prompt", prompt, "--prompt", prompt,
            "--prompt", "a red circle moves left on a black background", "--steps", "1", "--quiet"]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "vocabulary" in ln]
    assert warnings == [f"motiontune: prompt {prompt!r}: 3 word(s) not in the model's vocabulary, read as unknown: "
                        "man, dances, park (`motiontune list vocabulary` shows the words it knows)"]


def test_list_shows_the_toy_vocabulary(capsys):
    from motiontune.toyworld.world import VOCABULARY

    assert main(["list", "vocabulary"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vocabulary of --backbone toy") and "backbones" not in out
    words = set(" ".join(out.splitlines()[1:]).split())
    assert {w for v in VOCABULARY for w in v.split("-")} <= words
    assert main(["list"]) == 0 and "vocabulary of --backbone toy" in capsys.readouterr().out


# ------------------------------------------------------------------ 2. what was done to a real clip


def test_train_says_how_each_clip_was_taken_and_resized(tiny_model_dir, tmp_path, capsys):
    ref = write_video(moving(40, 36, 64), tmp_path / "wide.mp4")
    out = tmp_path / "run"
    rc = main(["train", "--backbone", tiny_model_dir("wan"), "--video", str(ref), "--caption", "a red square moves right",
               "--steps", "1", "--num-frames", "9", "--height", "32", "--width", "32", "--start", "5", "--end", "30",
               "--resize-mode", "pad", "--output", str(out), "--quiet"])
    assert rc == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "wide.mp4" in ln]
    assert lines == [f"motiontune: {ref}: 40 frames 64x36 -> 9 frames (uniform, frames 5-29) at 32x32, scaled and padded"]
    meta = json.loads((out / "motiontune.json").read_text())
    assert meta["frames"] == {"sampling": "uniform", "stride": None, "start": 5, "end": 30, "resize_mode": "pad"}


@pytest.mark.parametrize("extra, message", [
    (["--start", "-1"], "frame_start (--start) must be a whole number in [0, "),
    (["--start", "8", "--end", "8"], "frame_end (--end) must be a whole number in [9, "),
    (["--resize-mode", "zoom"], "invalid choice: 'zoom'"),
])
def test_clip_options_are_checked_before_the_model_loads(extra, message, clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(motiontune.api, "load_backbone", no_model)
    rc = main(["train", "--backbone", "toy", "--video", clip, "--caption", "c", "--output", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err


def test_resize_mode_in_a_config_file_is_checked_before_the_model_loads(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(motiontune.api, "load_backbone", no_model)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("resize_mode: zoom\n")
    rc = main(["train", "--config", str(cfg), "--backbone", "toy", "--video", clip, "--caption", "c", "--output", str(tmp_path / "o")])
    assert rc == 2 and "unknown resize mode 'zoom' (use crop, stretch or pad)" in capsys.readouterr().err


def test_a_segment_shorter_than_needed_is_named(tmp_path):
    from motiontune.data.frames import prepare_video
    from motiontune.errors import InputError

    with pytest.raises(InputError, match=r"clip: has 6 frames before frame 6, 9 are needed"):
        prepare_video(moving(40), 9, 32, 32, end=6)


# ------------------------------------------------------------------ 3. progress without a terminal


def test_training_and_generation_print_progress_lines_without_a_terminal(tiny_model_dir, clip, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the suite turns bars off; a user has them on
    assert not sys.stderr.isatty()  # captured: as under a log redirect
    out = tmp_path / "run"
    assert main(["train", "--backbone", tiny_model_dir("wan"), "--video", clip, "--caption", "c", "--steps", "3",
                 *SIZE, "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert all(s.startswith("training lora: step") for s in re.split(r"[\r\n]", err) if "training lora" in s)  # no bar
    steps = [ln for ln in err.splitlines() if ln.startswith("training lora: step")]
    assert steps[0].startswith("training lora: step 1/3 (33%), loss ") and "s/step, ETA" in steps[0]
    assert steps[-1].startswith("training lora: step 3/3 (100%), loss ") and steps[-1].endswith("ETA 0s")
    assert main(["generate", "--adapter", str(out), "--prompt", "c", "--steps", "2", "--output", str(tmp_path / "g")]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("sampling 1-1/1: step")]
    assert lines[-1].startswith("sampling 1-1/1: step 2/2 (100%)")


def test_a_terminal_keeps_the_bar(monkeypatch):
    from tqdm.auto import tqdm

    from motiontune.utils.progress import LineProgress, progress

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = progress(total=3, desc="training lora")
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert isinstance(progress(total=3), LineProgress)
    assert progress(total=3, disable=True).disable


def test_progress_lines_every_five_percent_or_thirty_seconds(monkeypatch, capsys):
    from motiontune.utils import progress as module

    clock = [0.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])

    def run(total: int, seconds_per_step: float) -> list[str]:
        clock[0] = 0.0
        bar = module.LineProgress(total=total, desc="x")
        for _ in range(total):
            clock[0] += seconds_per_step
            bar.update(1)
        bar.close()
        return capsys.readouterr().err.splitlines()

    lines = run(100, 1.0)  # the first step, then every 5% (5 steps, 5 s)
    assert len(lines) == 21 and lines[1] == "x: step 5/100 (5%), 1 s/step, ETA 1m35s"
    assert len(run(1000, 0.01)) == 6  # 5% takes 0.5 s: a line at the first 5% boundary 2 s after the last
    steps = [int(ln.split()[2].split("/")[0]) for ln in run(100, 10.0)]  # 5% takes 50 s: a line at least every 30 s
    assert max(np.diff(steps)) <= 3 and steps[-1] == 100


# ------------------------------------------------------------------ 4. the examples of every --help


def example_commands() -> list[list[str]]:
    _load_extra_commands()
    texts = [*EXAMPLES.values(), *[c.example for c in EXTRA_COMMANDS.values() if c.example]]
    commands = []
    for text in texts:
        for line in text.replace("\\\n", " ").splitlines():
            if line.strip().startswith("motiontune "):
                commands.append(shlex.split(line, comments=True)[1:])
    return commands


def test_every_help_example_parses_and_names_what_exists():
    import motiontune.evaluation.learned  # noqa: F401  (registers the learned metrics)
    from motiontune.backbones import all_aliases, model_aliases
    from motiontune.evaluation.registry import METRICS
    from motiontune.recipes import recipe_names

    commands = example_commands()
    assert len(commands) >= 15 and {argv[0] for argv in commands} >= {"train", "generate", "list", "probe", "eval", "bench", "demo"}
    known_models = {*model_aliases(), *all_aliases()}
    parser = build_parser()
    for argv in commands:
        args = vars(parser.parse_args(argv))  # parse only; a bad flag raises ConfigError
        backbone = args.get("backbone")
        assert backbone is None or backbone in known_models or "/" in backbone, (argv, backbone)
        for key in ("recipe", "recipes"):
            for name in (args.get(key) or "").split(","):
                assert not name or name in recipe_names() or name == "none", (argv, name)
        for name in (args.get("metrics") or "").split(","):
            assert not name or name in METRICS, (argv, name)


# ------------------------------------------------------------------ 5. eval's "n/a" with a reason


def test_eval_says_why_motion_fidelity_is_missing_and_what_the_mean_covers(tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(moving(12), folder / "a.mp4")
    blinked = moving(12)
    blinked[6] = 30  # the subject vanishes in one frame: its corners are lost there, then found again
    write_video(blinked, folder / "b.mp4")
    write_video(np.full((12, 32, 32, 3), 90, np.uint8), folder / "c-flat.mp4")
    ref = write_video(moving(12), tmp_path / "ref.mp4")
    assert main(["eval", "--video", str(folder), "--reference", str(ref), "--metrics", "motion_fidelity",
                 "--json", str(tmp_path / "scores.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln.split()[1:] for ln in out[1:5]}
    assert float(rows["a.mp4"][0]) > 0.99 and float(rows["b.mp4"][0]) > 0.9 and rows["c-flat.mp4"] == ["n/a"]
    assert rows["mean"][1:] == ["(2", "of", "3)"]
    assert "motion_fidelity n/a for c-flat.mp4: no point to compare (video: no corner to track in its first frame)" in out
    data = json.loads((tmp_path / "scores.json").read_text())
    assert data["mean_of_videos"] == {"motion_fidelity": 2}
    assert data["videos"][2]["metrics"]["motion_fidelity"].startswith("n/a: no point to compare")


# ------------------------------------------------------------------ 6. adapters that move


def test_adapter_records_the_model_name_and_clip_hash_and_moves(tiny_toy, clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOTIONTUNE_TOY_MODEL", tiny_toy)
    out = tmp_path / "run"
    assert main(["train", "--backbone", "toy", "--video", clip, "--caption", "a red circle moves right", "--steps", "1",
                 "--output", str(out), "--quiet"]) == 0
    meta = json.loads((out / "motiontune.json").read_text())
    assert meta["backbone"] == {"family": "wan", "source": "toy"}
    assert meta["references"]["video_sha256"] == [hashlib.sha256(open(clip, "rb").read()).hexdigest()]
    moved = tmp_path / "elsewhere" / "adapter"
    shutil.copytree(out, moved)
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["generate", "--adapter", "adapter", "--prompt", "a blue square moves right", "--steps", "1",
                 "--output", "gen", "--quiet"]) == 0
    assert os.path.isfile(tmp_path / "elsewhere" / "gen" / "00-a-blue-square-moves-right.mp4")
    # a folder written before: the absolute model folder of the machine that trained it
    meta["backbone"]["source"] = tiny_toy
    (moved / "motiontune.json").write_text(json.dumps(meta))
    assert main(["generate", "--adapter", "adapter", "--prompt", "x", "--steps", "1", "--quiet"]) == 0
    meta["backbone"]["source"] = "/home/someone/motiontune/toyworld/model"
    (moved / "motiontune.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["generate", "--adapter", "adapter", "--prompt", "x", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("motiontune: error: adapter: its model /home/someone/motiontune/toyworld/model (recorded in "
                   "motiontune.json) is not on this machine; give --backbone (an alias, hub id, folder or 'toy')")
    assert main(["generate", "--adapter", "adapter", "--backbone", "toy", "--prompt", "x", "--steps", "1", "--quiet"]) == 0


# ------------------------------------------------------------------ 7. a fast --help and list

_IMPORTED = """
import sys
from motiontune.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("imported:", *sorted(m for m in ("torch", "diffusers", "transformers", "peft", "accelerate") if m in sys.modules))
"""


@pytest.mark.parametrize("argv, imported", [(["--help"], "imported:"), (["train", "--help"], "imported:"), (["list"], "imported: torch")])
def test_help_and_list_import_no_heavy_library(argv, imported):
    proc = subprocess.run([sys.executable, "-c", _IMPORTED, *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == imported
