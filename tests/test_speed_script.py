"""benchmarks/speed.py: short runs on the tiny Wan model, JSON output, the results table and the
trainer-vs-bare-loop cases (lora, two stages, motiondirector)."""

import importlib.util
import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("motiontune_bench_speed", os.path.join(ROOT, "benchmarks", "speed.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_tiny_wan_run_writes_positive_numbers(speed, tmp_path):
    out = tmp_path / "speed.json"
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n## Quality\n\nkept as is\n", encoding="utf-8")
    argv = ["--tiny", "wan", "--num-frames", "5", "--height", "16", "--width", "16", "--warmup", "1",
            "--train-steps", "2", "--sample-steps", "2", "--threads", "1", "--overhead", "--quiet",
            "--output-json", str(out), "--append-results", str(results)]
    returned = speed.main(argv)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["command"] == returned["command"]
    for key in ("command", "date", "machine", "source", "size", "settings", "train", "sample", "overhead"):
        assert key in data, key
    assert data["source"] == {**data["source"], "kind": "tiny", "name": "wan", "family": "wan"}
    assert data["size"]["latent_shape"] == [1, 16, 2, 2, 2]
    train, sample, overhead = data["train"], data["sample"], data["overhead"]
    assert train["seconds_per_step"] > 0 and len(train["step_seconds"]) == 2
    assert train["trainable_parameters"] > 0
    assert sample["seconds_per_step"] > 0 and sample["steps"] == 2
    # classifier-free guidance: one denoiser call per step on the conditional + unconditional batch
    assert sample["predict_calls_per_step"] == 1 and sample["predict_rows_per_step"] == 2
    for phase in (train, sample):
        assert phase["memory"]["measure"] in ("cpu_peak_rss", "cpu_ru_maxrss_delta", "cuda_max_memory_allocated")
        assert phase["memory"]["peak_mib"] > 0 and phase["memory"]["growth_mib"] >= 0
    assert overhead["motiontune_seconds_per_step"] > 0 and overhead["bare_seconds_per_step"] > 0
    assert overhead["ratio"] == pytest.approx(overhead["motiontune_seconds_per_step"] / overhead["bare_seconds_per_step"])
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["torch"]

    # the results table: other sections are kept, a second run of the same row replaces it
    text = results.read_text(encoding="utf-8")
    assert "## Quality\n\nkept as is" in text and "## Speed and memory" in text
    assert "python benchmarks/speed.py --tiny wan --num-frames 5" in text
    speed.append_results(str(results), data)
    again = results.read_text(encoding="utf-8")
    assert again.count("| 1 | tiny wan") == 1 and "| 2 |" not in again


def _check_overhead(o, steps):
    assert o["motiontune_seconds_per_step"] > 0 and o["bare_seconds_per_step"] > 0
    assert math.isfinite(o["ratio"]) and o["ratio"] > 0
    assert o["ratio"] == pytest.approx(o["motiontune_seconds_per_step"] / o["bare_seconds_per_step"])
    assert len(o["motiontune_step_seconds"]) == steps and len(o["bare_step_seconds"]) == steps
    assert all(x > 0 for x in o["motiontune_step_seconds"] + o["bare_step_seconds"])


def test_two_branch_overheads_on_tiny_wan(speed, tmp_path):
    out = tmp_path / "speed.json"
    argv = ["--tiny", "wan", "--num-frames", "5", "--height", "16", "--width", "16", "--warmup", "1",
            "--train-steps", "2", "--no-sample", "--threads", "1", "--overhead-two-stage", "--overhead-motiondirector",
            "--quiet", "--output-json", str(out)]
    speed.main(argv)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["overhead"] is None and data["sample"] is None  # only the cases asked for

    md = data["overhead_motiondirector"]
    _check_overhead(md, 2)
    assert md["recipe"] == "motiondirector"
    assert md["passes_per_step"] == [2]  # spatial_dropout=0: the frame pass and the clip pass every step
    assert sorted(md["trainable_parameters"]) == ["spatial", "temporal"]
    assert md["branches_moved"] == {"motiontune": ["spatial", "temporal"], "bare": ["spatial", "temporal"]}

    two = data["overhead_two_stage"]
    _check_overhead(two, 2)
    assert [s["name"] for s in two["stages"]] == ["spatial", "temporal"]
    assert [s["train"] for s in two["stages"]] == [["spatial"], ["temporal"]]
    assert two["timed_steps_per_stage"] == {"spatial": 1, "temporal": 1}  # the switch lies inside the timed steps
    assert two["branches_moved"] == {"motiontune": ["spatial", "temporal"], "bare": ["spatial", "temporal"]}


def test_two_stage_overhead_needs_two_timed_steps(speed):
    with pytest.raises(SystemExit, match="--train-steps >= 2"):
        speed.main(["--tiny", "wan", "--train-steps", "1", "--overhead-two-stage", "--quiet"])
