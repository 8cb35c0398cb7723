"""Issue 32, the run side: settings refused before any model loads, non-finite training never
saved, adapters with NaN weights refused, resume only into the same run (fingerprint), --no-resume
that keeps a saved adapter until the new run has finished, and leftovers of killed runs cleaned."""

import json
import logging
import math
import os

import numpy as np
import pytest
import torch

from motiontune import api
from motiontune.backbones import load_backbone
from motiontune.cli import main
from motiontune.data.dataset import Sample, TrainingData
from motiontune.diffusion.sampling import SamplingConfig
from motiontune.errors import ConfigError, ModelLoadError, TrainingDiverged
from motiontune.recipes import make_recipe
from motiontune.training.checkpoint import clean_leftovers, list_checkpoints, save_checkpoint, staging_paths
from motiontune.training.trainer import Trainer, TrainConfig

VIDEO = torch.rand(3, 5, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.fixture()
def no_model_load(monkeypatch):
    """Any model load fails the test: the settings must be refused before."""

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr(api, "load_backbone", refuse)


@pytest.fixture()
def reference(tmp_path):
    from motiontune.data.video_io import write_video

    frames = np.zeros((12, 32, 32, 3), np.uint8)
    for i in range(12):
        frames[i, 10:20, 2 * i: 2 * i + 8] = (255, 0, 0)
    path = tmp_path / "ref.mp4"
    write_video(frames, path)
    return str(path)


def snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


def one_line_error(capsys, rc) -> str:
    """The one error line of a failed run (the info and warning lines a run logs before it, such as
    how the clip was resized, left out)."""
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if not ln.startswith("motiontune: ") or ln.startswith("motiontune: error: ")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------- item 1 and 6: refused before loading

TRAIN_CASES = [
    (["--lr", "nan"], "learning_rate (--lr) must be a number in (0, 1] (got nan)"),
    (["--lr", "inf"], "learning_rate (--lr) must be a number in (0, 1] (got inf)"),
    (["--lr", "1e30"], "learning_rate (--lr) must be a number in (0, 1] (got 1e+30)"),
    (["--lr", "0"], "learning_rate (--lr) must be a number in (0, 1] (got 0.0)"),
    (["--lr", "-1"], "learning_rate (--lr) must be a number in (0, 1] (got -1.0)"),
    (["--alpha", "nan"], "alpha must be a number > 0 (got nan)"),
    (["--rank", "100000"], "rank must be a whole number in [1, 1024] (got 100000)"),
    (["--num-frames", "0"], "num_frames must be a whole number in [1, 8192] (got 0)"),
    (["--height", "-32"], "height must be a whole number in [1, 8192] (got -32)"),
    (["--width", "0"], "width must be a whole number in [1, 8192] (got 0)"),
    (["--checkpoint-every", "-3"], "checkpoint_every must be a whole number in [0, 1000000] (got -3)"),
    (["--steps", "0"], "steps must be a whole number in [1, 1000000] (got 0)"),
    (["--steps", "1000001"], "steps must be a whole number in [1, 1000000] (got 1000001)"),
    (["--batch-size", "0"], "batch_size must be a whole number in [1, 1024] (got 0)"),
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["--set", "bogus=1"], "unknown setting(s) for this recipe: bogus"),
    (["--video", "/no/such/clip.mp4"], "/no/such/clip.mp4: no such file or folder"),
]


@pytest.mark.parametrize("extra, message", TRAIN_CASES, ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_train_settings_refused_before_the_model_loads(extra, message, reference, tmp_path, capsys, no_model_load):
    out = tmp_path / "run"
    argv = ["train", "--backbone", "toy", "--video", reference, "--caption", "c", "--output", str(out)]
    if extra[0] == "--video":
        argv = ["train", "--backbone", "toy", "--caption", "c", "--output", str(out)]
    err = one_line_error(capsys, main(argv + extra))
    assert message in err
    assert not out.exists()


@pytest.mark.parametrize("yaml_text, message", [
    ("steps: 3\nbogus_key: 1\n", "unknown setting(s) for train: bogus_key"),
    ("steps: true\n", "steps must be a whole number in [1, 1000000] (got True)"),
    ("lr: .nan\n", "learning_rate (--lr) must be a number in (0, 1] (got nan)"),
    ("rank: true\n", "rank must be a whole number in [1, 1024] (got True)"),
])
def test_config_file_mistakes_refused_before_the_model_loads(yaml_text, message, reference, tmp_path, capsys, no_model_load):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "run"
    rc = main(["train", "--config", str(cfg), "--backbone", "toy", "--video", reference, "--caption", "c", "--output", str(out)])
    assert message in one_line_error(capsys, rc)
    assert not out.exists()


def test_config_file_number_written_as_text_is_read(tmp_path):
    """YAML reads 1e-4 (no dot) as text: a number given so is taken as the number."""
    assert TrainConfig(learning_rate="1e-4").learning_rate == pytest.approx(1e-4)


def test_output_folder_that_is_a_file_is_refused(reference, tmp_path, capsys, no_model_load):
    afile = tmp_path / "taken"
    afile.write_text("mine")
    for out, message in ((afile, "exists and is not a folder"), (afile / "run", "is a file")):
        rc = main(["train", "--backbone", "toy", "--video", reference, "--caption", "c", "--output", str(out)])
        err = one_line_error(capsys, rc)
        assert message in err and str(out) in err
    assert afile.read_text() == "mine"


GENERATE_CASES = [
    (["--guidance", "nan"], "guidance_scale (--guidance) must be a number in [0, 100] (got nan)"),
    (["--guidance", "inf"], "guidance_scale (--guidance) must be a number in [0, 100] (got inf)"),
    (["--adapter-scale", "nan"], "adapter_scale must be a number in [-10, 10] (got nan)"),
    (["--adapter-scale", "inf"], "adapter_scale must be a number in [-10, 10] (got inf)"),
    (["--steps", "0"], "num_inference_steps (--steps) must be a whole number in [1, 10000] (got 0)"),
    (["--num-frames", "0"], "num_frames must be a whole number in [1, 8192] (got 0)"),
    (["--height", "-8"], "height must be a whole number in [1, 8192] (got -8)"),
]


@pytest.mark.parametrize("extra, message", GENERATE_CASES, ids=[" ".join(c[0]) for c in GENERATE_CASES])
def test_generate_settings_refused_before_the_model_loads(extra, message, tmp_path, capsys, no_model_load):
    out = tmp_path / "gen"
    rc = main(["generate", "--backbone", "toy", "--prompt", "a red circle", "--output", str(out)] + extra)
    assert message in one_line_error(capsys, rc)
    assert not out.exists()


def test_python_api_gets_the_same_checks(tmp_path, reference, no_model_load):
    with pytest.raises(ConfigError, match=r"learning_rate \(--lr\) must be a number in \(0, 1\]"):
        api.train("toy", videos=[reference], captions="c", output_dir=str(tmp_path / "a"), learning_rate=float("nan"))
    with pytest.raises(ConfigError, match="rank must be a whole number"):
        api.train("toy", videos=[reference], captions="c", output_dir=str(tmp_path / "a"), recipe_settings={"rank": 100000})
    with pytest.raises(ConfigError, match="guidance_scale"):
        api.generate("a red circle", backbone="toy", guidance=float("nan"))
    assert not (tmp_path / "a").exists()
    # bools are not numbers
    for bad in ({"steps": True}, {"batch_size": False}, {"seed": True}, {"max_grad_norm": float("inf")}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
    with pytest.raises(ConfigError, match="rank"):
        make_recipe("lora", rank=True)
    with pytest.raises(ConfigError, match="scale"):
        make_recipe("lora", scale=float("nan"))
    with pytest.raises(ConfigError, match="num_frames"):
        SamplingConfig(num_frames=True)


# ---------------------------------------------------------------------------- helpers for runs


def trainer(folder, out, steps=3, video=VIDEO, caption="a red circle moves left", **kw):
    spec = load_backbone(folder)
    recipe = make_recipe("lora", rank=2, alpha=2, attention=("joint",))
    cfg = TrainConfig(output_dir=str(out), steps=steps, progress=False, learning_rate=1e-3, checkpoint_every=1, **kw)
    return Trainer(spec, recipe, TrainingData([Sample(video, caption)]), cfg)


@pytest.fixture()
def finished_run(tiny_model_dir, tmp_path):
    """A folder holding a finished run (3 steps) and a file of the user's, with its bytes."""
    out = tmp_path / "run"
    trainer(tiny_model_dir("wan"), out).train()
    (out / "notes.txt").write_text("mine")
    return out, snapshot(out)


# ---------------------------------------------------------------------------- item 2: non-finite training


def test_nan_loss_stops_training_and_keeps_the_saved_adapter(tiny_model_dir, finished_run):
    out, before = finished_run
    nan_video = VIDEO.clone()
    nan_video[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"^training diverged at step 1: the loss is nan"):
        trainer(tiny_model_dir("wan"), out, video=nan_video, resume=False).train()
    assert snapshot(out) == before
    assert not os.path.exists(staging_paths(str(out))[0])


def test_non_finite_weights_stop_training_at_their_step_from_the_cli(tiny_model_dir, reference, tmp_path, capsys, monkeypatch):
    """--no-resume into a folder with a good adapter, and the weights turn infinite at step 2: exit 2,
    one line naming the step, the folder exactly as it was."""
    out = tmp_path / "run"
    argv = ["train", "--backbone", tiny_model_dir("wan"), "--video", reference, "--caption", "c", "--output", str(out),
            "--num-frames", "5", "--height", "16", "--width", "16", "--steps", "3", "--rank", "2", "--quiet",
            "--checkpoint-every", "1"]
    assert main(argv) == 0
    before = snapshot(out)
    step = Trainer.train_step

    def blow_up(self, i):
        result = step(self, i)
        if i == 1:
            with torch.no_grad():
                self.params[0].fill_(math.inf)
        return result

    monkeypatch.setattr(Trainer, "train_step", blow_up)
    err = one_line_error(capsys, main(argv + ["--no-resume"]))
    assert "training diverged at step 2: trainable weights became NaN or infinite" in err
    assert snapshot(out) == before


def test_non_finite_weights_are_never_written(tiny_model_dir, tmp_path):
    tr = trainer(tiny_model_dir("wan"), tmp_path / "a", steps=1)
    bad = {k: torch.full_like(v, math.nan) for k, v in tr.recipe.state_dict().items()}
    with pytest.raises(TrainingDiverged, match="checkpoint step 7: weight .* holds NaN or infinite values; not saved"):
        save_checkpoint(str(tmp_path / "a"), 7, bad, tr.optimizer)
    assert list_checkpoints(str(tmp_path / "a")) == []
    tr.recipe.apply(tr.spec)
    with torch.no_grad():
        tr.params[0].fill_(math.nan)
    with pytest.raises(TrainingDiverged, match="the final adapter"):
        tr.save_final()
    assert not (tmp_path / "a" / "motiontune.json").exists()


# ---------------------------------------------------------------------------- item 3: NaN adapter refused


def test_generate_refuses_an_adapter_with_nan_weights(finished_run, tmp_path, capsys):
    from motiontune.utils.files import load_tensors, save_tensors

    out, _ = finished_run
    weights = out / "pytorch_lora_weights.safetensors"
    tensors = load_tensors(str(weights))
    first = sorted(tensors)[0]
    tensors[first][..., 0] = math.nan
    save_tensors(tensors, str(weights))
    gen = tmp_path / "gen"
    rc = main(["generate", "--adapter", str(out), "--prompt", "a cat", "--steps", "1", "--output", str(gen), "--quiet"])
    err = one_line_error(capsys, rc)
    assert f"{weights}: the adapter's weights hold NaN or infinite values" in err
    assert not gen.exists()
    with pytest.raises(ModelLoadError, match="NaN"):
        api.load(adapter=str(out), device="cpu")


# ---------------------------------------------------------------------------- item 4: resume fingerprint


def test_resume_refuses_another_runs_checkpoints(tiny_model_dir, finished_run):
    out, before = finished_run
    folder = tiny_model_dir("wan")
    for kw, what in (({"caption": "a blue square"}, "data"), ({"seed": 5}, "settings.seed"),
                     ({"batch_size": 2}, "settings.batch_size")):
        with pytest.raises(ConfigError, match=rf"holds checkpoints of another run \({what} differ\).*--no-resume"):
            trainer(folder, out, **kw).train()
    assert snapshot(out) == before  # "trained 0 steps" no more, and motiontune.json as it was
    # the same run resumes (finished: no step), also with more steps at a constant rate
    assert trainer(folder, out).train().resumed_from == 3
    assert trainer(folder, out, steps=4).train().resumed_from == 3


def test_checkpoint_without_fingerprint_resumes_with_a_warning(tiny_model_dir, tmp_path, caplog):
    out = tmp_path / "run"
    trainer(tiny_model_dir("wan"), out, steps=4, stop_at=2).train()
    state_path = out / "checkpoints" / "step-000002" / "state.json"
    state = json.loads(state_path.read_text())
    assert state["fingerprint"]["data"]
    state.pop("fingerprint")
    state_path.write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING, logger="motiontune"):
        result = trainer(tiny_model_dir("wan"), out, steps=4, seed=9).train()
    assert result.resumed_from == 2 and result.finished
    assert "no run fingerprint" in caplog.text


# ---------------------------------------------------------------------------- item 5 and 7: --no-resume, leftovers


def test_no_resume_replaces_the_run_only_when_it_finishes(tiny_model_dir, finished_run):
    out, before = finished_run
    folder = tiny_model_dir("wan")
    # killed (here interrupted) mid-run: the saved run is untouched and its folder beside is gone
    step = Trainer.train_step

    def interrupt(self, i):
        if i == 1:
            raise KeyboardInterrupt
        return step(self, i)

    tr = trainer(folder, out, seed=3, resume=False)
    tr.train_step = interrupt.__get__(tr)
    with pytest.raises(KeyboardInterrupt):
        tr.train()
    assert snapshot(out) == before and not os.path.exists(staging_paths(str(out))[0])
    # a run that finishes replaces the adapter and the checkpoints; the user's file stays
    result = trainer(folder, out, steps=2, seed=3, resume=False).train()
    assert result.finished and result.resumed_from == 0
    assert [s for s, _ in list_checkpoints(str(out))] == [1, 2]
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "motiontune.json").read_text())["training"]["seed"] == 3
    assert sorted(os.listdir(out.parent)) == ["run"]


def test_killed_no_resume_run_is_cleaned_and_never_taken_for_the_old_run(tiny_model_dir, finished_run):
    """What kill -9 leaves: the new run's folder beside (with a checkpoint of another seed), a half-written
    checkpoint and a checkpoint moved aside, a temporary file. The next plain run removes them and
    resumes the saved run only when it is the same run."""
    out, before = finished_run
    folder = tiny_model_dir("wan")
    staging = staging_paths(str(out))[0]
    trainer(folder, staging, steps=3, seed=3, stop_at=2).train()  # the killed --no-resume run's checkpoints
    leftovers = [out / "checkpoints" / ".tmp-step-000004-x1", out / "checkpoints" / ".old-step-000003-x2"]
    for path in leftovers:
        path.mkdir()
        (path / "adapter.safetensors").write_bytes(b"partial")
    (out / ".tmp-abc.safetensors").write_bytes(b"partial")
    with pytest.raises(ConfigError, match=r"another run \(settings.seed differ\)"):
        trainer(folder, out, seed=3).train()  # the killed run's settings: not resumed from the old run
    assert not os.path.exists(staging) and snapshot(out) == before
    assert trainer(folder, out).train().resumed_from == 3  # the saved run's own settings: it is that run


def test_swap_cut_short_between_its_renames_is_completed(tmp_path):
    out = tmp_path / "run"
    staging, old = staging_paths(str(out))
    os.makedirs(old)
    (tmp_path / ".run.old-run" / "motiontune.json").write_text("old")
    (tmp_path / ".run.old-run" / "cache.txt").write_text("kept")
    os.makedirs(staging)
    (tmp_path / ".run.tmp-run" / "motiontune.json").write_text("new")
    clean_leftovers(str(out))
    assert (out / "motiontune.json").read_text() == "new" and (out / "cache.txt").read_text() == "kept"
    assert sorted(os.listdir(tmp_path)) == ["run"]
