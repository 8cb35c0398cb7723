"""Bad inputs, outputs, devices and adapter folders: one line on stderr, exit status 2, files untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import tracemalloc

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from motiontune import api
from motiontune.cli import main
from motiontune.data.frames import prepare_video, sample_frames
from motiontune.data.video_io import read_video, write_frames, write_video
from motiontune.errors import InputError

SIZE = ["--num-frames", "5", "--height", "32", "--width", "32"]


def moving(n: int, size: int = 32) -> np.ndarray:
    frames = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        frames[i, 8:16, (2 * i) % (size - 8) : (2 * i) % (size - 8) + 8] = (255, 0, 0)
        frames[i, -4:, :4] = i % 256  # each frame differs, so frames can be told apart
    return frames


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture()
def no_model_load(monkeypatch):
    """Fail the test if a backbone loads: the error must come before that."""

    def boom(*args, **kwargs):
        raise AssertionError("the model was loaded before the error")

    monkeypatch.setattr(api, "load_backbone", boom)


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    """A one-step LoRA adapter of the tiny Wan."""
    folder = tmp_path_factory.mktemp("adapter")
    ref = folder / "ref.mp4"
    write_video(moving(12), ref)
    out = folder / "run"
    rc = main(["train", "--backbone", tiny_model_dir("wan"), "--video", str(ref), "--caption", "a red square moves right",
               "--steps", "1", "--rank", "2", "--output", str(out), "--quiet", *SIZE])
    assert rc == 0
    return str(out)


def copy_adapter(adapter: str, tmp_path) -> str:
    folder = str(tmp_path / "adapter")
    shutil.copytree(adapter, folder)
    return folder


# ----------------------------------------------------------------------------------------- world-writable scratch


@pytest.fixture()
def shared_tmp():
    """A scratch folder another user may enter (pytest's own tmp folders are private to their owner)."""
    folder = tempfile.mkdtemp(prefix="motiontune-test-")
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_unprivileged(argv: list[str], capsys) -> tuple[int, str]:
    """``main(argv)`` as a user without root's override of file permissions; (status, stderr).

    As root, it runs as ``nobody`` in a subprocess (setpriv), with model loading made to fail."""
    if os.geteuid() != 0:
        return main(argv), capsys.readouterr().err
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot drop the permission override")
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*drop, sys.executable, "-c", "import motiontune.cli"], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "HOME": "/tmp"})
    if probe.returncode != 0:
        pytest.skip("user nobody cannot import motiontune from this checkout (its folders are not readable by others)")
    code = ("import sys\nimport motiontune.api as api\n"
            "def boom(*a, **k):\n    raise AssertionError('the model was loaded before the error')\n"
            "api.load_backbone = boom\nfrom motiontune.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([*drop, sys.executable, "-c", code, *argv],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HOME": "/tmp"})
    return proc.returncode, proc.stderr


# ----------------------------------------------------------------------------------------- 1. video input


def test_fifo_video_is_refused_without_opening_it(tiny_model_dir, tmp_path, capsys):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    done = threading.Event()

    def unblock():  # a reader that blocks on the FIFO gets end-of-file after a while, so the test fails instead of hanging
        if done.wait(60):
            return
        while not done.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                done.wait(0.2)

    threading.Thread(target=unblock, daemon=True).start()
    try:
        rc = main(["train", "--backbone", tiny_model_dir("wan"), "--video", str(fifo), "--caption", "c",
                   "--output", str(tmp_path / "run"), "--steps", "1", *SIZE])
    finally:
        done.set()
    assert rc == 2
    one_line_error(capsys, str(fifo), "not a regular file")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("ext", [".webm", ".mkv"])
def test_truncated_video_is_refused(tiny_model_dir, tmp_path, capsys, ext):
    path = tmp_path / f"clip{ext}"
    write_video(moving(40), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("saved before")
    rc = main(["train", "--backbone", tiny_model_dir("wan"), "--video", str(path), "--caption", "c",
               "--output", str(out), "--steps", "1", *SIZE])
    assert rc == 2
    one_line_error(capsys, str(path), "truncated")
    assert sorted(os.listdir(out)) == ["keep.txt"] and (out / "keep.txt").read_text() == "saved before"
    with pytest.raises(InputError, match="truncated"):  # whole-clip reads too
        read_video(path)


def test_truncated_mp4_is_reported_as_damaged(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(moving(40), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="damaged, truncated"):
        read_video(path)


def test_long_clip_keeps_only_the_sampled_frames(tmp_path):
    path = tmp_path / "long.mp4"
    frames = moving(600, 64)
    write_video(frames, path, crf=0)
    del frames
    tracemalloc.start()
    try:
        out = prepare_video(path, 17, 32, 32, frame_rule=(4, 1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (3, 17, 32, 32)
    # decoding all 600 frames (64x64 RGB, 12 KiB each) and stacking them took about 14 MiB
    assert peak < 2 * 2**20, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("kind", ["mp4", "webm", "gif", "folder"])
@pytest.mark.parametrize("sampling, stride, start, repeat, n", [
    ("uniform", None, 0, False, 9), ("uniform", None, 3, False, 5), ("stride", 3, 2, False, 5),
    ("first", None, 4, False, 5), ("uniform", None, 0, True, 30),
])
def test_sampled_decoding_matches_decoding_everything(tmp_path, kind, sampling, stride, start, repeat, n):
    path = tmp_path / ("frames" if kind == "folder" else f"clip.{kind}")
    if kind == "folder":
        write_frames(moving(20), path)
    else:
        write_video(moving(20), path)
    whole = read_video(path)
    expected = sample_frames(whole, n, stride, start, sampling, repeat)
    got = prepare_video(path, n, 32, 32, sampling=sampling, stride=stride, start=start, allow_repeat=repeat)
    assert torch.equal(got, prepare_video(expected, n, 32, 32))


def test_unreadable_video_is_reported_as_permission_denied(shared_tmp, capsys):
    path = os.path.join(shared_tmp, "clip.mp4")
    write_video(moving(8), path)
    os.chmod(path, 0)
    rc, err = run_unprivileged(["eval", "--video", path, "--metrics", "temporal_flickering"], capsys)
    assert rc == 2, err
    assert err.strip() == f"motiontune: error: {path}: permission denied"


# ----------------------------------------------------------------------------------------- 2. text that is not UTF-8


def test_non_utf8_yaml_config(tmp_path, capsys, no_model_load):
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(b"caption: caf\xe9\n")
    assert main(["train", "--config", str(cfg)]) == 2
    one_line_error(capsys, str(cfg), "not UTF-8 text (byte 0xe9 at offset 12)")


def test_non_utf8_adapter_json(tmp_path, capsys, no_model_load):
    (tmp_path / "motiontune.json").write_bytes(b'{"recipe": "lora", "note": "\xff"}')
    assert main(["generate", "--adapter", str(tmp_path), "--prompt", "x", "--output", str(tmp_path / "out")]) == 2
    one_line_error(capsys, str(tmp_path / "motiontune.json"), "not UTF-8 text")
    assert not (tmp_path / "out").exists()


def test_non_utf8_caption_beside_a_video(tmp_path, capsys):
    from motiontune.evaluation.suites import load_video_folder

    write_video(moving(8), tmp_path / "clip.mp4")
    (tmp_path / "clip.txt").write_bytes(b"a red square moves \xff\n")
    assert main(["eval", "--video", str(tmp_path / "clip.mp4"), "--metrics", "temporal_flickering"]) == 2
    one_line_error(capsys, str(tmp_path / "clip.txt"), "not UTF-8 text")
    with pytest.raises(InputError, match="clip.txt: not UTF-8 text"):
        load_video_folder(str(tmp_path))


@pytest.mark.parametrize("argv, option", [
    (["generate", "--backbone", "toy", "--prompt", "a caf\udce9 moves"], "--prompt"),
    (["generate", "--backbone", "toy", "--prompt", "ok", "--negative-prompt", "\udcff"], "--negative-prompt"),
    (["train", "--backbone", "toy", "--video", "v.mp4", "--caption", "caf\udce9", "--output", "o"], "--caption"),
])
def test_undecodable_command_line_text(argv, option, capsys, no_model_load):
    assert main(argv) == 2
    one_line_error(capsys, f"{option}: not valid UTF-8 text")


# ----------------------------------------------------------------------------------------- 3. output paths


def test_generate_output_that_is_a_file(tiny_model_dir, tmp_path, capsys, no_model_load):
    out = tmp_path / "out"
    out.write_text("keep me")
    assert main(["generate", "--backbone", tiny_model_dir("wan"), "--prompt", "x", "--output", str(out)]) == 2
    one_line_error(capsys, str(out), "not a folder")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("command", ["generate", "train"])
def test_output_under_sys(tiny_model_dir, tmp_path, capsys, no_model_load, command):
    ref = tmp_path / "ref.mp4"
    write_video(moving(8), ref)
    extra = ["--prompt", "x"] if command == "generate" else ["--video", str(ref), "--caption", "c"]
    out = "/sys/motiontune-test-output/run"
    assert main([command, "--backbone", tiny_model_dir("wan"), *extra, "--output", out, *SIZE]) == 2
    one_line_error(capsys, out, "cannot write in /sys")
    assert not os.path.exists("/sys/motiontune-test-output")


def test_generate_output_in_read_only_folder(shared_tmp, capsys):
    ro = os.path.join(shared_tmp, "ro")
    os.mkdir(ro, 0o555)
    os.chmod(ro, 0o555)
    rc, err = run_unprivileged(["generate", "--backbone", "/nonexistent-model", "--prompt", "x", "--output", os.path.join(ro, "out")], capsys)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and os.path.join(ro, "out") in err and ("not writable" in err or "cannot write" in err), err
    assert os.listdir(ro) == []


def test_eval_json_pointing_at_a_folder(tmp_path, capsys):
    write_video(moving(8), tmp_path / "clip.mp4")
    target = tmp_path / "scores"
    target.mkdir()
    before = sorted(os.listdir(tmp_path))
    assert main(["eval", "--video", str(tmp_path / "clip.mp4"), "--metrics", "temporal_flickering", "--json", str(target)]) == 2
    one_line_error(capsys, f"--json {target}: is a folder")
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(target) == []


def test_json_write_failure_leaves_no_temp_file(tmp_path):
    from motiontune.evaluation.runner import write_json

    (tmp_path / "scores.json").mkdir()
    with pytest.raises(OSError):
        write_json(tmp_path / "scores.json", {"a": 1})
    assert os.listdir(tmp_path) == ["scores.json"]


# ----------------------------------------------------------------------------------------- 4. devices


@pytest.mark.parametrize("device, message", [
    ("banana", "--device banana: unknown device"),
    pytest.param("cuda", "--device cuda: CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")),
])
def test_bad_device_before_loading(tiny_model_dir, tmp_path, capsys, no_model_load, device, message):
    assert main(["generate", "--backbone", tiny_model_dir("wan"), "--prompt", "x", "--device", device,
                 "--output", str(tmp_path / "out")]) == 2
    one_line_error(capsys, message)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------- 5. adapter folders


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "not a motiontune adapter file"),
    ('{"format": 1, "config": {}}', "not a motiontune adapter file"),
])
def test_malformed_adapter_json(tmp_path, capsys, no_model_load, content, message):
    (tmp_path / "motiontune.json").write_text(content)
    assert main(["generate", "--adapter", str(tmp_path), "--prompt", "x", "--output", str(tmp_path / "out")]) == 2
    one_line_error(capsys, str(tmp_path / "motiontune.json"), message)


def test_adapter_of_another_family(adapter, tiny_model_dir, tmp_path, capsys):
    folder = copy_adapter(adapter, tmp_path)
    meta_path = os.path.join(folder, "motiontune.json")
    meta = json.loads(open(meta_path).read())
    meta["backbone"] = {"family": "cogvideox", "source": "THUDM/CogVideoX-2b"}
    with open(meta_path, "w") as fh:
        json.dump(meta, fh)
    model = tiny_model_dir("wan")
    assert main(["generate", "--adapter", folder, "--backbone", model, "--prompt", "x", "--output", str(tmp_path / "out")]) == 2
    one_line_error(capsys, "trained for THUDM/CogVideoX-2b (cogvideox), not for", f"{model} (wan)")
    assert not (tmp_path / "out").exists()


def test_adapter_for_another_backbone_of_the_family(adapter, tiny_model_dir, tiny_toy, tmp_path, capsys):
    # the toy architecture is a Wan with one block instead of two
    assert main(["generate", "--adapter", adapter, "--backbone", tiny_toy, "--prompt", "x", "--output", str(tmp_path / "out")]) == 2
    one_line_error(capsys, f"trained for {tiny_model_dir('wan')} (wan)", f"onto {tiny_toy} (wan)")


def test_adapter_with_wrongly_shaped_weights(adapter, tiny_model_dir, tmp_path, capsys):
    folder = copy_adapter(adapter, tmp_path)
    [weights] = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
    state = load_file(os.path.join(folder, weights))
    name = sorted(state)[0]
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    save_file(state, os.path.join(folder, weights))
    assert main(["generate", "--adapter", folder, "--prompt", "x", "--output", str(tmp_path / "out")]) == 2
    model = tiny_model_dir("wan")
    one_line_error(capsys, f"trained for {model} (wan)", f"onto {model} (wan)", "size mismatch")


def test_same_spec_and_adapter_twice(adapter, tiny_model_dir, tmp_path):
    spec = api.load(tiny_model_dir("wan"), device="cpu")[0]
    kwargs = dict(spec=spec, adapter=adapter, steps=2, seed=0, progress=False)
    first = api.generate("a red square moves right", **kwargs).videos
    off = api.generate("a red square moves right", adapter_scale=0.0, **kwargs).videos
    again = api.generate("a red square moves right", **kwargs).videos  # the saved scale again, not the last call's
    assert torch.equal(first, again) and not torch.equal(first, off)
    other = copy_adapter(adapter, tmp_path)
    with pytest.raises(Exception, match="already carries the adapter"):
        api.generate("x", spec=spec, adapter=other, steps=2, progress=False)


# ----------------------------------------------------------------------------------------- 6. .gitignore


def test_demo_output_folder_is_ignored_by_git():
    import inspect

    from motiontune.toyworld.demo import run_demo

    default = inspect.signature(run_demo).parameters["output_dir"].default
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not shutil.which("git") or not os.path.exists(os.path.join(root, ".git")):
        pytest.skip("not a git checkout")
    proc = subprocess.run(["git", "check-ignore", "-q", f"{default}/report.html"], cwd=root)
    assert proc.returncode == 0, f"{default}/ is not in .gitignore"
