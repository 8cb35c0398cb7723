"""The CPU thread policy (motiontune.utils.threads): parsing, the load arithmetic, the auto
policy's reaction to a neighbour starting and stopping, and the --threads option."""

import subprocess
import sys
import time

import pytest
import torch

from motiontune.cli import main
from motiontune.errors import ConfigError
from motiontune.utils import threads as th


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    th.reset()
    torch.set_num_threads(before)


def test_parse_threads():
    assert th.parse_threads("3") == 3 and th.parse_threads(" Auto ") == "auto" and th.parse_threads("keep") == "keep"
    assert th.parse_threads(None) is None
    for bad, message in (("0", "1 or more"), ("-2", "1 or more"), ("two", "positive whole number"), ("1.5", "positive whole number")):
        with pytest.raises(ConfigError, match=message):
            th.parse_threads(bad)


def test_threads_for_and_others_busy():
    assert [th.threads_for(x, 2) for x in (0.0, 0.4, 0.6, 1.0, 1.4, 3.0)] == [2, 2, 1, 1, 1, 1]
    assert th.threads_for(1.0, 16) == 15 and th.threads_for(0.0, 1) == 1
    a = th.Sample(wall=10.0, busy=100.0, own=5.0)
    b = th.Sample(wall=12.0, busy=104.0, own=7.0)  # 4 busy core-seconds in 2 s, 2 of them ours
    assert th.others_busy(a, b) == pytest.approx(1.0)
    assert th.others_busy(a, th.Sample(10.0, 101.0, 5.0)) == 0.0  # no time passed
    assert th.others_busy(a, th.Sample(11.0, 100.5, 6.0)) == 0.0  # never negative


def test_auto_policy_follows_a_neighbour(monkeypatch):
    clock = [0.0]
    samples = iter([
        th.Sample(0.0, 0.0, 0.0), th.Sample(0.2, 0.2, 0.2),  # start: only we are busy -> 2 threads
        th.Sample(3.5, 6.8, 4.0),  # a neighbour took 3.0 core-s over 3.3 s -> 1 thread
        th.Sample(7.0, 10.3, 7.5),  # the neighbour has stopped -> 2 threads
    ])
    monkeypatch.setattr(th, "take_sample", lambda: next(samples))
    monkeypatch.setattr(th.time, "sleep", lambda s: None)
    monkeypatch.setattr(th.time, "monotonic", lambda: clock[0])
    policy = th.ThreadPolicy("auto", cores=2)
    policy.start()
    assert policy.threads == 2 and torch.get_num_threads() == 2
    clock[0] = 1.0
    policy.tick()  # too soon: no sample taken
    assert policy.last.wall == 0.2
    clock[0] = 3.5
    policy.tick()
    assert policy.threads == 1 and torch.get_num_threads() == 1
    clock[0] = 7.0
    policy.tick()
    assert policy.threads == 2 and torch.get_num_threads() == 2 and policy.changes == 2


def test_fixed_and_keep_settings(monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.delenv(th.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert th.configure(1).threads == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv(th.ENV, "keep")
    torch.set_num_threads(2)
    assert th.configure() is None and torch.get_num_threads() == 2
    monkeypatch.setenv(th.ENV, "lots")
    with pytest.raises(ConfigError, match="MOTIONTUNE_THREADS: --threads must be"):
        th.configure()
    monkeypatch.delenv(th.ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert th.configure() is None  # the user's OMP_NUM_THREADS is kept


@pytest.mark.skipif(not sys.platform.startswith("linux") or th.available_cores() < 2, reason="needs /proc/stat and 2 cores")
def test_auto_policy_sees_a_real_busy_process():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        policy = th.ThreadPolicy("auto")
        policy.start(sample_seconds=0.6)
        assert policy.threads <= policy.cores - 1
    finally:
        busy.kill()
        busy.wait()


def test_threads_option_errors(capsys):
    for argv, message in (
        (["generate", "--prompt", "x", "--threads", "0"], "--threads must be 1 or more"),
        (["--threads=many", "generate", "--prompt", "x"], "--threads must be a positive whole number"),
        (["generate", "--prompt", "x", "--threads"], "--threads needs a value"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_under_load_report_states_the_targets():
    from test_toy_benchmarks import load_script

    bench = load_script("threads_under_load")
    results = {"keep-idle": {"seconds": 100.0, "load_before": 0.02}, "auto-idle": {"seconds": 103.0, "load_before": 0.01},
               "auto-load": {"seconds": 170.0, "load_before": 0.0}, "keep-load": {"seconds": 340.0, "load_before": None}}
    text = bench.report(results, "python benchmarks/threads_under_load.py", 2, None)
    assert "| auto-load | 170.0 | 170.0 | 0.00 |" in text and "| keep-load | 340.0 | 340.0 | n/a |" in text
    assert "auto under load / auto idle: **1.65x** (target <= 1.6x: NOT met)" in text
    assert "auto idle / keep idle: **1.03x** (target <= 1.05x: met)" in text
    assert "keep under load / keep idle: 3.40x" in text
    assert bench.main(["--runs", "auto-idle,fast"]) == 2 and bench.main(["--steps", "0"]) == 2 and bench.main(["--repeats", "0"]) == 2
    runs = [{"policy": "auto", "loaded": False, "seconds": s, "load_before": l} for s, l in ((80.0, 0.0), (70.0, 0.2), (75.0, None))]
    assert bench.summarize(runs) == {"auto-idle": {"times": [80.0, 70.0, 75.0], "loads": [0.0, 0.2, None], "seconds": 75.0, "load_before": 0.2}}
