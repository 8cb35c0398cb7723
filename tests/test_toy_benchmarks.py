"""benchmarks/toy_quality.py, toy_suite.py and tau_ablation.py end to end on a tiny untrained toy model.

These check that the scripts run, write what they say and keep the other sections of the results
document; the numbers of the real packaged model are in docs/RESULTS.md.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"motiontune_bench_{name}", os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def results_doc(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n## Speed and memory\n\nkept\n")
    return path


def test_tau_ablation_rows_and_boundary():
    tau = load_script("tau_ablation")
    rows = tau.ablation_rows(700.0, 100)
    assert rows == [("no tuning", None), ("tau = 800", 800.0), ("tau = 700", 700.0), ("tau = 600", 600.0),
                    ("all timesteps (tau = 0)", 0.0)]
    # taus outside (0, 1000) are dropped, the all-timesteps row stays
    assert [t for _, t in tau.ablation_rows(900.0, 100)] == [None, 900.0, 800.0, 0.0]
    assert tau.boundary_from([{"suggested_tau": 600.0}, {"suggested_tau": 800.0}, {"suggested_tau": None}], 100) == 700.0
    with pytest.raises(SystemExit):
        tau.boundary_from([{"suggested_tau": None}], 100)


def test_tau_ablation_runs_on_tiny_toy(tiny_toy, tmp_path, monkeypatch, results_doc):
    monkeypatch.setenv("MOTIONTUNE_TOY_MODEL", tiny_toy)
    tau = load_script("tau_ablation")
    out = tmp_path / "abl"
    args = ["--seeds", "0,1", "--scenarios", "1", "--probe-scenarios", "1", "--grid-step", "500", "--boundary", "500",
            "--train-steps", "1", "--steps", "2", "--output", str(out), "--append-results", str(results_doc)]
    assert tau.main(args) == 0
    probe = json.loads((out / "probe" / "motion-orbit-0" / "probe.json").read_text())
    assert {r["tau_start"] for r in probe["grid"]} == {500.0, 1000.0}
    assert (out / "probe" / "motion-orbit-0" / "tradeoff.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["boundary"] == 500.0
    assert list(summary["table"]) == ["no tuning", "tau = 500", "all timesteps (tau = 0)"]
    for label, stats in summary["table"].items():
        assert stats["cells"] == 2  # one scenario x two seeds
        assert 0.0 <= stats["toy_subject_accuracy"][0] <= 1.0
    # the timestep cells trained with the tau asked for
    meta = json.loads(next((out / "seed1" / "tau0500").rglob("motiontune.json")).read_text())
    assert json.dumps(meta).count("500") >= 1
    text = results_doc.read_text()
    assert "## Speed and memory\n\nkept" in text and "## Timestep ablation (toy)" in text
    assert "| tau = 500 |" in text and "boundary" in text.lower()
    # a re-run finds every cell finished and rewrites the same table
    assert tau.main(args) == 0
    assert json.loads((out / "summary.json").read_text())["table"].keys() == summary["table"].keys()


def test_toy_suite_script_on_tiny_toy(tiny_toy, tmp_path, monkeypatch, results_doc):
    monkeypatch.setenv("MOTIONTUNE_TOY_MODEL", tiny_toy)
    suite = load_script("toy_suite")
    out = tmp_path / "suite"
    assert suite.main(["--recipes", "none,lora", "--train-steps", "1", "--steps", "2", "--limit", "1",
                       "--output", str(out), "--append-results", str(results_doc)]) == 0
    results = json.loads((out / "results.json").read_text())
    rows = results if isinstance(results, list) else results.get("results", results.get("cells"))
    assert sorted(r["recipe"] for r in rows) == ["lora", "none"]
    text = results_doc.read_text()
    assert "## Toy suite" in text and "| lora | motion | 1 x 1 (1 cell) |" in text and "kept" in text


def test_toy_quality_script_on_tiny_toy(tiny_toy, tmp_path, results_doc):
    quality = load_script("toy_quality")
    out = tmp_path / "q.json"
    assert quality.main(["--model", tiny_toy, "--limit", "2", "--steps", "2", "--output-json", str(out),
                         "--append-results", str(results_doc)]) == 0
    data = json.loads(out.read_text())
    assert data["prompts"] == 2
    # the oracle reads ground-truth renders of the same prompts perfectly
    for key in ("color", "shape", "background", "motion_direction"):
        assert data["ground_truth_renders"][key] == 1.0
        assert 0.0 <= data["generated"][key] <= 1.0
    assert "## Toy model quality" in results_doc.read_text()
    # the confusion tables count every prompt once, and their diagonal is the accuracy
    for key, acc in (("shape", "shape"), ("motion", "motion_direction")):
        table = data["confusion"][key]
        assert sum(sum(row.values()) for row in table.values()) == 2
        assert sum(row.get(asked, 0) for asked, row in table.items()) / 2 == data["generated"][acc]


def test_toy_quality_confusion_of_ground_truth_renders_is_diagonal():
    import numpy as np

    from motiontune.toyworld.render import render
    from motiontune.toyworld.world import CaptionFields, sample_scene

    quality = load_script("toy_quality")
    fields = [CaptionFields("red", "circle", "left", "black"), CaptionFields("blue", "square", "up", "gray"),
              CaptionFields("green", "triangle", "left", "navy")]
    rng = np.random.default_rng(0)
    videos = [render(sample_scene(rng, "base", motions=[f.motion], colors=[f.color], shapes=[f.shape],
                                  backgrounds=[f.background])) for f in fields]
    table = quality.confusion(videos, fields)
    assert table["shape"] == {"circle": {"circle": 1}, "square": {"square": 1}, "triangle": {"triangle": 1}}
    assert table["motion"] == {"left": {"left": 2}, "up": {"up": 1}}
    assert quality.confusion_lines(table).splitlines() == [
        "- shape circle: circle 1", "- shape square: square 1", "- shape triangle: triangle 1",
        "- motion left: left 2", "- motion up: up 1"]
    records = quality.clip_records(videos, fields)
    assert [r["prompt"] for r in records] == [quality.caption(f) for f in fields]
    for r, f in zip(records, fields):  # renders read as asked, and their best-fitting motion is the asked one
        assert r["read"] == {"color": f.color, "shape": f.shape, "background": f.background, "motion": f.motion}
        assert r["fit"]["motion"] == f.motion and r["fit"]["error"] == r["fit"]["asked_error"] < 0.1


def test_word_influence_is_zero_for_a_model_that_ignores_the_prompt(tiny_toy):
    from motiontune.backbones import load_backbone
    from motiontune.toyworld.world import CaptionFields

    quality = load_script("toy_quality")
    spec = load_backbone(tiny_toy, family="wan")
    fields = [CaptionFields("red", "circle", "left", "black"), CaptionFields("blue", "square", "up", "gray")]
    real = quality.word_influence(spec, fields)
    assert sorted(real) == ["background", "color", "motion", "shape"]
    assert all(v > 0 for v in real.values())  # the random tiny model's output depends on every word
    spec.predict = lambda x, t, cond, **kw: 0.3 * x  # no text input at all
    assert quality.word_influence(spec, fields) == {"background": 0.0, "color": 0.0, "motion": 0.0, "shape": 0.0}


def test_partial_noise_script_on_tiny_toy(tiny_toy, tmp_path, results_doc):
    script = load_script("toy_partial_noise")
    grid = script.sigma_grid(4, 2.0)
    # the sampler's grid: from 1 to 0, warped by the shift
    assert grid[0] == 1.0 and grid[-1] == 0.0 and abs(grid[2] - 2 * 0.5 / 1.5) < 1e-12
    out = tmp_path / "p.json"
    assert script.main(["--model", tiny_toy, "--limit", "2", "--steps", "2", "--levels", "0.5,1",
                        "--output-json", str(out), "--append-results", str(results_doc)]) == 0
    data = json.loads(out.read_text())
    assert sorted(data["levels"]) == ["0.5", "1"] and data["prompts"] == 2
    for row in data["levels"].values():
        assert 0.0 <= row["color"] <= 1.0 and 0.0 <= row["motion_direction"] <= 1.0
    text = results_doc.read_text()
    assert "## Toy model from partial noise" in text and "kept" in text and "| 0.5 |" in text
    with pytest.raises(SystemExit):
        script.main(["--model", tiny_toy, "--levels", "0,1"])
    with pytest.raises(SystemExit):
        script.main(["--model", tiny_toy, "--levels", "high"])


def test_partial_noise_euler_follows_the_straight_flow_to_the_clip(tiny_toy):
    """With the exact velocity (eps - x0) of the straight path, the Euler steps land on x0 from any level."""
    import torch

    from motiontune.backbones import load_backbone

    script = load_script("toy_partial_noise")
    spec = load_backbone(tiny_toy, family="wan")
    shape = spec.latent_shape(17, 32, 32, batch=1)
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    eps = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    calls = []

    def exact(x, t, cond, **kw):
        calls.append(float(t[0]))
        return torch.cat([eps - x0] * (x.shape[0] // x0.shape[0]))

    spec.predict = exact
    cond = spec.encode_prompt(["a red circle moves left on a black background"])
    uncond = spec.encode_prompt([""])
    for level, steps_run in ((1.0, 4), (0.8, 2), (0.0, 0)):
        calls.clear()
        z = script.denoise_from(spec, x0, cond, uncond, level, 4, 2.0, 3.0, 7)
        assert torch.allclose(z, x0, atol=1e-5) and len(calls) == steps_run
    # the start is the first grid level at or below the asked one: 0.8 starts at 2 * 0.5 / 1.5
    calls.clear()
    script.denoise_from(spec, x0, cond, uncond, 0.8, 4, 2.0, 3.0, 7)
    assert abs(calls[0] - 1000 * 2 * 0.5 / 1.5) < 1e-3


def test_toy_quality_of_training_checkpoints_fills_a_table_by_step(tiny_toy, tmp_path, results_doc):
    import torch

    from motiontune.backbones import load_backbone
    from motiontune.errors import ConfigError
    from motiontune.toyworld.training import load_dit_checkpoint
    from motiontune.utils.files import save_tensors

    quality = load_script("toy_quality")
    from motiontune.recipes import make_recipe

    spec = load_backbone(tiny_toy, family="wan")
    recipe = make_recipe("full", attention=("all",))
    recipe.apply(spec)
    with torch.no_grad():
        for p in spec.denoiser.parameters():
            p.add_(0.01)  # weights that differ from the folder's
    weights = recipe.state_dict()
    for step in ("000400", "000200", "000400"):
        ck = tmp_path / "dit" / f"step-{step}"
        ck.mkdir(parents=True, exist_ok=True)
        save_tensors(weights, str(ck / "adapter.safetensors"))
        assert quality.main(["--model", tiny_toy, "--weights", str(ck), "--limit", "2", "--steps", "2",
                             "--append-results", str(results_doc)]) == 0
    text = results_doc.read_text()
    section = text[text.index("## Toy model quality by training step"):]
    patch = "x".join(str(v) for v in spec.denoiser.config.patch_size)
    rows = [line for line in section.splitlines() if line.startswith(f"| {patch} / ")]
    assert [r.split("|")[1].strip() for r in rows] == [f"{patch} / 000200", f"{patch} / 000400"]  # one row per step, sorted
    # a checkpoint of the tune stage keeps a row of its own beside the dit stage's of the same step
    ck = tmp_path / "tune" / "checkpoints" / "step-000200"
    ck.mkdir(parents=True)
    save_tensors(weights, str(ck / "adapter.safetensors"))
    assert quality.main(["--model", tiny_toy, "--weights", str(ck), "--limit", "2", "--steps", "2",
                         "--append-results", str(results_doc)]) == 0
    section = results_doc.read_text()[results_doc.read_text().index("## Toy model quality by training step"):]
    rows = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith(f"| {patch} / ")]
    assert f"{patch} / tune 000200" in rows and f"{patch} / 000200" in rows and len(rows) == 3
    assert "kept" in text
    # the same weights loaded through the helper reproduce the model exactly; a foreign file is refused
    spec2 = load_backbone(tiny_toy, family="wan")
    before = {k: v.clone() for k, v in spec2.denoiser.state_dict().items()}
    load_dit_checkpoint(spec2, str(tmp_path / "dit" / "step-000200"))
    after = spec2.denoiser.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    for k, v in spec.denoiser.state_dict().items():
        assert torch.equal(v, after[k]), k
    bad = tmp_path / "bad"
    bad.mkdir()
    save_tensors({"something.else": torch.zeros(2)}, str(bad / "adapter.safetensors"))
    with pytest.raises(ConfigError, match="not a transformer checkpoint"):
        load_dit_checkpoint(load_backbone(tiny_toy, family="wan"), str(bad))


def test_toy_scripts_render_at_the_model_size(tmp_path, results_doc):
    """A toy model of 48x48 frames (patch 1x3x3): the scripts render their clips at its size."""
    from diffusers import WanPipeline

    from motiontune.toyworld.training import ToyModelConfig, build_components, write_defaults

    cfg = ToyModelConfig(z_dim=4, vae_base_dim=4, text_dim=16, heads=2, head_dim=12, layers=1, ffn_dim=32,
                         sample_steps=2, guidance=2.0, heldin_prompts=2, frame_size=48, patch_size="1,3,3")
    folder = str(tmp_path / "toy48")
    WanPipeline(**build_components(cfg)).save_pretrained(folder)
    write_defaults(cfg, folder)
    quality = load_script("toy_quality")
    out = tmp_path / "q.json"
    assert quality.main(["--model", folder, "--limit", "1", "--steps", "1", "--influence-prompts", "1",
                         "--output-json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["ground_truth_renders"]["shape"] == 1.0 and set(data["word_influence"]) == {"color", "shape", "motion", "background"}
    partial = load_script("toy_partial_noise")
    assert partial.main(["--model", folder, "--limit", "1", "--steps", "1", "--levels", "0.5",
                         "--output-json", str(tmp_path / "p.json")]) == 0


def test_toy_train_speed_script_on_tiny_toy(tiny_toy, tmp_path, results_doc, capsys):
    script = load_script("toy_train_speed")
    out = tmp_path / "speed.json"
    assert script.main(["--model", tiny_toy, "--modes", "eager", "--latent-frames", "3,1", "--batch", "2", "--steps", "2",
                        "--warmup", "1", "--quiet", "--output-json", str(out), "--append-results", str(results_doc)]) == 0
    data = json.loads(out.read_text())
    assert [(r["mode"], r["latent_frames"], r["steps"], len(r["times"])) for r in data["results"]] == [("eager", 3, 2, 3), ("eager", 1, 2, 3)]
    for r in data["results"]:
        assert r["median"] > 0 and r["mean"] == pytest.approx(sum(r["times"][1:]) / 2)
    text = results_doc.read_text()
    assert "## Toy training speed" in text and "kept" in text
    assert "| eager / 3 / " in text and "| eager / 1 / " in text and "--latent-frames 3,1" in text
    # bad input: one line, exit code 2, the document untouched
    before = results_doc.read_text()
    for bad in (["--modes", "fast"], ["--latent-frames", "0"], ["--latent-frames", "x"], ["--steps", "0"],
                ["--model", str(tmp_path / "missing")]):
        capsys.readouterr()
        assert script.main(bad + ["--append-results", str(results_doc)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    assert results_doc.read_text() == before


def test_heldout_motion_shown_needs_a_good_fit():
    from motiontune.toyworld.motions import HELDOUT_FIT_MAX, MotionFit, MotionParams, heldout_motion_shown

    errors = {"orbit": 0.36, "down": 0.43, "left": 0.9}
    assert not heldout_motion_shown(MotionFit("orbit", MotionParams(), errors, 0.1))  # best, but a poor fit
    assert heldout_motion_shown(MotionFit("orbit", MotionParams(), dict(errors, orbit=0.04), 0.1))
    assert heldout_motion_shown(MotionFit("orbit", MotionParams(), dict(errors, orbit=HELDOUT_FIT_MAX), 0.1))
    assert not heldout_motion_shown(MotionFit("down", MotionParams(), dict(errors, down=0.01), 0.1))  # a base motion
    assert not heldout_motion_shown(MotionFit("orbit", MotionParams(), errors, 0.1), max_error=0.3)


def test_toy_quality_counts_held_out_motions_of_renders():
    import numpy as np

    from motiontune.toyworld.render import render
    from motiontune.toyworld.world import CaptionFields, sample_scene

    quality = load_script("toy_quality")
    rng = np.random.default_rng(3)
    asked = [CaptionFields("red", "circle", "left", "black"), CaptionFields("blue", "square", "down", "gray")]
    # the first clip is a render of an orbit although the prompt asked for "left"; the second is as asked
    videos = [render(sample_scene(rng, "heldout", motions=["orbit"], shapes=["circle"], backgrounds=["black"])),
              render(sample_scene(rng, "base", motions=["down"], colors=["blue"], shapes=["square"], backgrounds=["gray"]))]
    scores = quality.score(videos, asked)
    assert scores["heldout_motion_appears"] == 0.5 and scores["heldout_motion_shown"] == 0.5
    assert scores["motion_direction"] == 0.5 and scores["shape"] == 1.0


def test_heldout_fit_script_calibrates_the_threshold(tmp_path, results_doc):
    from motiontune.toyworld.motions import BASE_MOTIONS, HELDOUT_FIT_MAX, HELDOUT_MOTIONS

    script = load_script("toy_heldout_fit")
    out = tmp_path / "fit.json"
    assert script.main(["--per-motion", "4", "--output-json", str(out), "--append-results", str(results_doc)]) == 0
    data = json.loads(out.read_text())
    assert data["per_motion"] == 4 and sorted(data["motions"]) == sorted(BASE_MOTIONS + HELDOUT_MOTIONS)
    for m in HELDOUT_MOTIONS:  # renders of a held-out motion fit it well below the threshold, and best
        r = data["motions"][m]
        assert r["own_error_quantiles"][-1] < HELDOUT_FIT_MAX / 2 and r["best_is_own"] == 1.0
    for m in BASE_MOTIONS:  # and no render of a base motion fits a held-out motion best
        assert data["motions"][m]["best_is_heldout"] == 0.0
    text = results_doc.read_text()
    assert "## Toy oracle: how well renders fit their motion" in text and "kept" in text and "| orbit | held-out |" in text
    with pytest.raises(SystemExit):
        script.main(["--per-motion", "0"])


# ------------------------------------------------------------------------------------------
# toy_suite.py's table: means and 95% t-intervals over (scenario, seed) cells
# ------------------------------------------------------------------------------------------

T975_DF1, T975_DF2, T975_DF3 = 12.7062, 4.3027, 3.1824  # t_{0.975, df}, from any t table
SUITE_SCENARIOS = {"motion-orbit-0": "motion", "motion-zigzag-0": "motion", "appearance-purple-square-0": "appearance"}


def write_fake_run(folder, seed, cells, recipes=("none", "lora"), train_steps=5):
    """An output folder as the runner leaves it: bench.json planning every scenario x recipe, and
    one result.json per finished cell. ``cells``: (scenario, recipe) -> (metrics, wall seconds)."""
    from motiontune.evaluation.runner import MANIFEST_FILE, RESULT_FILE, cell_dir, write_json

    planned = [f"{s}/{r}" for s in SUITE_SCENARIOS for r in recipes]
    write_json(os.path.join(folder, MANIFEST_FILE), {
        "suite": "toy", "recipes": list(recipes), "metrics": [], "cells": planned,
        "settings": {"backbone": "toy", "family": None, "steps": 2, "train_steps": train_steps, "size": [None, None, None],
                     "guidance": None, "seed": seed, "dtype": "fp32", "recipe_settings": {}, "train_settings": {}},
        "scenarios": [{"id": s, "group": g, "images": ["still.png"] if g == "appearance" else []}
                      for s, g in SUITE_SCENARIOS.items()],
    })
    for (scenario, recipe), (metrics, wall) in cells.items():
        cell = f"{scenario}/{recipe}"
        write_json(cell_dir(folder, scenario, recipe) / RESULT_FILE, {
            "cell": cell, "index": planned.index(cell), "scenario": scenario, "recipe": recipe,
            "group": SUITE_SCENARIOS[scenario], "videos": [], "metrics": metrics, "skipped": {},
            "seconds": {"train": wall, "generate": 0.0, "score": 0.0, "wall": wall},
        })


def motion_metrics(fidelity, subject, leakage=0.0, background=1.0, motion=0.0):
    return {"toy_motion_fidelity": fidelity, "toy_subject_accuracy": subject, "toy_appearance_leakage": leakage,
            "toy_background_accuracy": background, "toy_motion_accuracy": motion}


def appearance_metrics(subject, background=1.0, motion=1.0):
    # no reference clip: the runner stores no motion fidelity or leakage for these scenarios
    return {"toy_subject_accuracy": subject, "toy_background_accuracy": background, "toy_motion_accuracy": motion}


def fake_cells(seed, drop=()):
    """Known values: lora's motion fidelity 0.2/0.4 (seed 0) and 0.3/0.5 (seed 1); none's is NaN in one cell."""
    lora_fid = {0: (0.2, 0.4), 1: (0.3, 0.5)}[seed]
    none_fid = {0: (0.0, float("nan")), 1: (0.1, -0.1)}[seed]
    cells = {
        ("motion-orbit-0", "none"): (motion_metrics(none_fid[0], 1.0), 4.0),
        ("motion-zigzag-0", "none"): (motion_metrics(none_fid[1], 0.0), 6.0),
        ("appearance-purple-square-0", "none"): (appearance_metrics(0.0), 5.0),
        ("motion-orbit-0", "lora"): (motion_metrics(lora_fid[0], 1.0, leakage=1 / 3), 40.0),
        ("motion-zigzag-0", "lora"): (motion_metrics(lora_fid[1], 1.0, leakage=0.0), 50.0),
        ("appearance-purple-square-0", "lora"): (appearance_metrics({0: 1.0, 1: 2 / 3}[seed]), 30.0),
    }
    return {k: v for k, v in cells.items() if k not in drop}


def table_row(text, recipe, group):
    rows = [line for line in text.splitlines() if line.startswith(f"| {recipe} | {group} |")]
    assert len(rows) == 1, text
    return [c.strip() for c in rows[0].strip().strip("|").split("|")]


def parse_estimate(cell):
    """'0.350 [0.145, 0.555]' -> (0.350, 0.145, 0.555); '0.350' -> (0.350, None, None)."""
    import re

    m = re.fullmatch(r"(-?\d+\.\d+)(?: \[(-?\d+\.\d+), (-?\d+\.\d+)\])?(?: \(n=\d+\))?", cell)
    assert m, cell
    return tuple(None if g is None else float(g) for g in m.groups())


def hand_interval(values, t):
    n = len(values)
    mean = sum(values) / n
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return mean, mean - t * sd / n ** 0.5, mean + t * sd / n ** 0.5


def test_toy_suite_t_quantiles():
    suite = load_script("toy_suite")
    assert suite.t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert suite.t_quantile(9) == pytest.approx(2.262, abs=1e-3)
    assert suite.t_quantile(29) == pytest.approx(2.045, abs=1e-3)
    assert suite.t_quantile(60) == pytest.approx(2.000, abs=1e-3)
    if suite._scipy_t() is None:
        assert suite.t_quantile(61) == 1.96
    est = suite.mean_interval([1.0, None, float("nan"), 3.0])
    assert (est.n, est.mean) == (2, 2.0)
    assert (est.low, est.high) == pytest.approx((2 - suite.t_quantile(1), 2 + suite.t_quantile(1)))  # sd sqrt(2), n 2
    one = suite.mean_interval([0.5])
    assert one.n == 1 and one.text(1) == "0.500" and one.text(2) == "0.500 (n=1)"
    assert suite.mean_interval([None, float("nan")]).text(2) == "—"


def test_toy_suite_table_from_folders(tmp_path, results_doc, monkeypatch, capsys):
    suite = load_script("toy_suite")
    monkeypatch.setattr(suite, "run_bench", lambda *a, **k: pytest.fail("--table-only must not run anything"))
    s0, s1 = tmp_path / "s0", tmp_path / "s1"
    write_fake_run(s0, 0, fake_cells(0))
    write_fake_run(s1, 1, fake_cells(1))
    assert suite.main(["--table-only", "--from", str(s0), "--from", str(s1), "--append-results", str(results_doc)]) == 0
    text = results_doc.read_text()
    assert "## Speed and memory\n\nkept" in text and "## Toy suite" in text
    section = text[text.index("## Toy suite"):]
    assert "Seeds 0, 1; 5 training steps per scenario; 2 sampling steps" in section
    assert "--table-only --from" in section and "95% t-interval" in section and "Unequal samples" not in section

    # lora, motion: 2 scenarios x 2 seeds; every column by hand
    row = table_row(section, "lora", "motion")
    assert row[2] == "2 x 2 (4 cells)"
    cols = dict(zip(["fidelity", "subject", "leakage", "background", "motion"], row[3:8]))
    for name, values in (("fidelity", [0.2, 0.4, 0.3, 0.5]), ("leakage", [1 / 3, 0.0, 1 / 3, 0.0])):
        mean, low, high = hand_interval(values, T975_DF3)
        got = parse_estimate(cols[name])
        assert got == pytest.approx((mean, low, high), abs=1.5e-3), (name, got)
    assert parse_estimate(cols["fidelity"]) == pytest.approx((0.350, 0.145, 0.555), abs=1e-9)
    assert cols["subject"] == "1.000 [1.000, 1.000]"  # no spread: the interval is the mean itself
    assert row[8] == "45"  # seconds per scenario: mean of 40, 50, 40, 50

    # lora, appearance: one scenario x 2 seeds (df 1); motion fidelity and leakage have no value there
    row = table_row(section, "lora", "appearance")
    assert row[2] == "1 x 2 (2 cells)" and row[3] == "—" and row[5] == "—"
    mean, low, high = hand_interval([1.0, 2 / 3], T975_DF1)
    assert parse_estimate(row[4]) == pytest.approx((mean, low, high), abs=1.5e-3)

    # none, motion: the NaN cell (seed 0, zigzag) is left out of motion fidelity only
    row = table_row(section, "none", "motion")
    assert row[2] == "2 x 2 (4 cells)"
    assert row[3].endswith("(n=3)")
    mean, low, high = hand_interval([0.0, 0.1, -0.1], T975_DF2)
    assert parse_estimate(row[3]) == pytest.approx((mean, low, high), abs=1.5e-3)
    mean, low, high = hand_interval([1.0, 0.0, 1.0, 0.0], T975_DF3)  # subject accuracy keeps all 4 cells
    assert parse_estimate(row[4]) == pytest.approx((mean, low, high), abs=1.5e-3) and "(n=" not in row[4]

    # the same numbers from summarize, unrounded
    rows = {(r.recipe, r.group): r for r in suite.summarize(suite.read_folders([str(s0), str(s1)]))}
    est = rows[("lora", "motion")].columns["toy_motion_fidelity"]
    mean, low, high = hand_interval([0.2, 0.4, 0.3, 0.5], suite.t_quantile(3))
    assert (est.mean, est.low, est.high, est.n) == pytest.approx((mean, low, high, 4))
    assert rows[("none", "appearance")].columns["toy_appearance_leakage"].n == 0

    # --recipes picks rows; a seed's shards in two folders pool as one seed
    capsys.readouterr()
    assert suite.main(["--table-only", "--recipes", "lora", "--from", str(s0), "--from", str(s1)]) == 0
    out = capsys.readouterr().out
    assert "| lora | motion |" in out and "| none |" not in out


def test_toy_suite_table_says_when_a_row_has_fewer_cells(tmp_path, results_doc):
    suite = load_script("toy_suite")
    s0, s1 = tmp_path / "s0", tmp_path / "s1"
    write_fake_run(s0, 0, fake_cells(0))
    # seed 1 still running: lora has not reached zigzag and the appearance scenario yet
    write_fake_run(s1, 1, fake_cells(1, drop=[("motion-zigzag-0", "lora"), ("appearance-purple-square-0", "lora")]))
    assert suite.main(["--table-only", "--from", str(s0), "--from", str(s1), "--append-results", str(results_doc)]) == 0
    section = results_doc.read_text()[results_doc.read_text().index("## Toy suite"):]
    assert table_row(section, "none", "motion")[2] == "2 x 2 (4 cells)"
    row = table_row(section, "lora", "motion")
    assert row[2] == "2 x 2 (3 of 4 cells)"
    mean, low, high = hand_interval([0.2, 0.4, 0.3], T975_DF2)  # over the 3 finished cells only
    assert parse_estimate(row[3]) == pytest.approx((mean, low, high), abs=1.5e-3)
    assert table_row(section, "lora", "appearance")[2] == "1 x 1 (1 of 2 cells)"
    assert "**Unequal samples:**" in section and "lora / motion (3 of 4)" in section and "lora / appearance (1 of 2)" in section
    # a recipe planned in one folder only is short by the other folder's cells
    s2 = tmp_path / "s2"
    write_fake_run(s2, 2, {k: v for k, v in fake_cells(0).items() if k[1] == "none"}, recipes=("none",))
    assert suite.main(["--table-only", "--from", str(s0), "--from", str(s2), "--append-results", str(results_doc)]) == 0
    section = results_doc.read_text()[results_doc.read_text().index("## Toy suite"):]
    assert table_row(section, "none", "motion")[2] == "2 x 2 (4 cells)"
    assert table_row(section, "lora", "motion")[2] == "2 x 1 (2 of 4 cells)"


def test_toy_suite_has_no_row_for_a_recipe_on_input_it_does_not_take(tmp_path, results_doc):
    # synmotion takes no still images: an older folder planned it on the appearance scenario anyway
    suite = load_script("toy_suite")
    s0 = tmp_path / "s0"
    cells = {**fake_cells(0), ("motion-orbit-0", "synmotion"): (motion_metrics(0.1, 1.0), 20.0),
             ("motion-zigzag-0", "synmotion"): (motion_metrics(0.3, 1.0), 30.0)}
    write_fake_run(s0, 0, cells, recipes=("none", "lora", "synmotion"))
    assert "appearance-purple-square-0/synmotion" in json.loads((s0 / "bench.json").read_text())["cells"]
    assert suite.main(["--table-only", "--from", str(s0), "--append-results", str(results_doc)]) == 0
    section = results_doc.read_text()[results_doc.read_text().index("## Toy suite"):]
    assert table_row(section, "synmotion", "motion")[2] == "2 x 1 (2 cells)"
    assert "| synmotion | appearance |" not in section and "Unequal samples" not in section
    assert table_row(section, "lora", "appearance")[2] == "1 x 1 (1 cell)"

    # the runner drops such a planned cell from the folder's manifest when it next plans it
    from motiontune.evaluation.runner import BenchConfig, _update_manifest, read_manifest
    from motiontune.evaluation.suites import Scenario, Suite

    manifest = read_manifest(s0)
    scenarios = [Scenario(d["id"], ["a prompt"], images=[np.zeros((8, 8, 3), np.uint8)] if d["images"] else [],
                          image_captions=["c"] if d["images"] else [], videos=[] if d["images"] else ["clip.mp4"],
                          captions=[] if d["images"] else ["c"], group=d["group"]) for d in manifest["scenarios"]]
    config = BenchConfig(suite="toy", recipes=["synmotion"], backbone="toy", output=str(s0), steps=2, train_steps=5)
    settings = dict(manifest["settings"])
    config.fingerprint = lambda: settings  # the fake folder's settings
    _update_manifest(config, Suite("toy", scenarios), [], [])
    planned = read_manifest(s0)["cells"]
    assert "appearance-purple-square-0/synmotion" not in planned
    assert {"motion-orbit-0/synmotion", "appearance-purple-square-0/lora", "appearance-purple-square-0/none"} <= set(planned)


def test_toy_suite_paired_comparison(tmp_path, results_doc, capsys):
    suite = load_script("toy_suite")
    s0, s1 = tmp_path / "s0", tmp_path / "s1"
    write_fake_run(s0, 0, fake_cells(0))
    # seed 1: lora has not reached zigzag: only three motion cells are paired
    write_fake_run(s1, 1, fake_cells(1, drop=[("motion-zigzag-0", "lora")]))
    assert suite.main(["--table-only", "--from", str(s0), "--from", str(s1), "--compare", "lora:none",
                       "--append-results", str(results_doc)]) == 0
    section = results_doc.read_text()[results_doc.read_text().index("## Toy suite"):]
    assert "Paired differences" in section
    row = table_row(section, "lora - none", "motion")
    assert row[2] == "3"
    # motion fidelity: (0.2 - 0.0), (0.4 - NaN: left out), (0.3 - 0.1) -> 2 differences
    mean, low, high = hand_interval([0.2, 0.2], T975_DF1)
    assert row[3] == "**0.200 [0.200, 0.200] (n=2)**"  # bold: the interval excludes 0
    # subject accuracy: 1-1, 1-0, 1-1 -> 0, 1, 0
    mean, low, high = hand_interval([0.0, 1.0, 0.0], T975_DF2)
    assert parse_estimate(row[4]) == pytest.approx((mean, low, high), abs=1.5e-3)  # not bold: the interval holds 0
    comps = suite.compare(suite.read_folders([str(s0), str(s1)]), [("lora", "none")])
    fid = next(c for c in comps if c.group == "motion").columns["toy_motion_fidelity"]
    assert (fid.mean, fid.n) == pytest.approx((0.2, 2))
    appearance = table_row(section, "lora - none", "appearance")
    assert appearance[2] == "2" and appearance[3] == "—"
    # bad pairs and unknown recipes: one line, exit 2, nothing written
    before = results_doc.read_text()
    for bad, word in (("lora", "RECIPE_A:RECIPE_B"), ("lora:lora", "two different"), ("lora:dualreal", "dualreal")):
        capsys.readouterr()
        assert suite.main(["--table-only", "--from", str(s0), "--compare", bad, "--append-results", str(results_doc)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and word in err and "\n" not in err
    assert results_doc.read_text() == before


def test_toy_suite_refuses_bad_input_before_any_work(tmp_path, results_doc, monkeypatch, capsys):
    suite = load_script("toy_suite")
    monkeypatch.setattr(suite, "run_bench", lambda *a, **k: pytest.fail("ran despite bad input"))
    s0 = tmp_path / "s0"
    write_fake_run(s0, 0, fake_cells(0))
    other = tmp_path / "other"
    write_fake_run(other, 1, fake_cells(1), train_steps=7)
    empty = tmp_path / "empty"
    empty.mkdir()
    before = results_doc.read_text()
    doc = ["--append-results", str(results_doc)]
    cases = [
        (["--table-only", "--from", str(s0), "--from", str(tmp_path / "missing")], "no such folder"),
        (["--table-only", "--from", str(empty)], "not a benchmark output folder"),
        (["--table-only", "--from", str(s0), "--from", str(other)], "other settings (train_steps)"),
        (["--seeds", "0,x", "--output", str(tmp_path / "run")], "--seeds '0,x'"),
        (["--seeds", "0,0", "--output", str(tmp_path / "run")], "listed twice"),
        (["--seeds", "0,1", "--seed", "2"], "not both"),
        (["--from", str(s0)], "--table-only"),
        (["--table-only", "--from", str(s0), "--train-steps", "3"], "--train-steps"),
        (["--recipes", "none,nosuch", "--output", str(tmp_path / "run")], "nosuch"),
        (["--set", "lora", "--output", str(tmp_path / "run")], "RECIPE.KEY=VALUE"),
        (["--recipes", "none,lora", "--compare", "lora:timestep", "--output", str(tmp_path / "run")], "not in --recipes: timestep"),
        (["--compare", "lora", "--output", str(tmp_path / "run")], "RECIPE_A:RECIPE_B"),
        # a folder of another run (train steps 5) refused before seed 0 starts
        (["--seeds", "0,1", "--recipes", "none", "--train-steps", "3", "--output", str(tmp_path / "reuse")], "other settings"),
    ]
    write_fake_run(tmp_path / "reuse" / "seed1", 1, {})
    for args, message in cases:
        capsys.readouterr()
        assert suite.main(args + doc) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and message in err, (args, err)
    assert results_doc.read_text() == before
    assert not (tmp_path / "run").exists() and not (tmp_path / "reuse" / "seed0").exists()
    # a folder for the document that does not exist is refused too
    capsys.readouterr()
    assert suite.main(["--table-only", "--from", str(s0), "--append-results", str(tmp_path / "no" / "R.md")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_toy_suite_seeds_on_tiny_toy(tiny_toy, tmp_path, monkeypatch, results_doc):
    monkeypatch.setenv("MOTIONTUNE_TOY_MODEL", tiny_toy)
    suite = load_script("toy_suite")
    out = tmp_path / "suite"
    args = ["--recipes", "none", "--steps", "2", "--limit", "1", "--seeds", "0,1", "--output", str(out),
            "--append-results", str(results_doc)]
    assert suite.main(args) == 0
    for seed in (0, 1):
        manifest = json.loads((out / f"seed{seed}" / "bench.json").read_text())
        assert manifest["settings"]["seed"] == seed
        assert (out / f"seed{seed}" / "cells" / "motion-orbit-0" / "none" / "result.json").is_file()
    section = results_doc.read_text()[results_doc.read_text().index("## Toy suite"):]
    assert table_row(section, "none", "motion")[2] == "1 x 2 (2 cells)"
    # a second run finds every cell finished; --table-only without --from reads the same folders
    calls = []
    real = suite.run_bench
    monkeypatch.setattr(suite, "run_bench", lambda cfg, log=None: calls.append(real(cfg, log=log)) or calls[-1])
    assert suite.main(args) == 0
    assert [c.ran for c in calls] == [[], []] and all(c.skipped for c in calls)
    first = table_row(section, "none", "motion")
    assert suite.main(["--table-only", "--seeds", "0,1", "--output", str(out), "--append-results", str(results_doc)]) == 0
    section = results_doc.read_text()[results_doc.read_text().index("## Toy suite"):]
    assert table_row(section, "none", "motion")[:8] == first[:8]


def test_adapter_effect_script_measures_the_difference_to_the_base_model(tiny_toy, tmp_path, monkeypatch, results_doc):
    monkeypatch.setenv("MOTIONTUNE_TOY_MODEL", tiny_toy)
    suite, effect = load_script("toy_suite"), load_script("adapter_effect")
    out = tmp_path / "suite"
    assert suite.main(["--recipes", "lora", "--train-steps", "2", "--steps", "2", "--limit", "1",
                       "--output", str(out)]) == 0
    cells = out / "cells"
    # bad input is refused before any model loads
    assert effect.main(["--cells", str(cells), "--recipes", "lora", "--per-recipe", "0"]) == 2
    assert effect.main(["--cells", str(tmp_path / "nowhere"), "--recipes", "lora"]) == 2
    assert effect.main(["--cells", str(cells), "--recipes", "dualreal"]) == 2
    assert effect.main(["--cells", str(cells), "--recipes", ","]) == 2
    js = tmp_path / "effect.json"
    assert effect.main(["--cells", str(cells), "--recipes", "lora", "--per-recipe", "1", "--output-json", str(js),
                        "--append-results", str(results_doc)]) == 0
    data = json.loads(js.read_text())
    (measured,) = data["rows"]["lora"]
    # the same figure computed here: the cell's first prompt with the adapter at scale 1 and at scale 0
    from motiontune.api import generate, load

    cell = next(cells.iterdir()) / "lora"
    prompt = json.loads((cell / "result.json").read_text())["videos"][0]["prompt"]
    spec, rec, _ = load(None, str(cell / "adapter"))
    on = generate(prompt, spec=spec, recipe=rec, adapter_scale=1.0, seed=0, progress=False).videos
    off = generate(prompt, spec=spec, recipe=rec, adapter_scale=0.0, seed=0, progress=False).videos
    assert measured == pytest.approx(float((on - off).abs().mean() / 2), rel=1e-5)
    assert measured > 0
    assert "| `lora` at scale 1 | 1 |" in results_doc.read_text()
