"""`motiontune demo` end to end on a tiny untrained model of the toy model's architecture.

(The quality of the real packaged toy model is measured by benchmarks/toy_quality.py, not here.)
"""

import json

from motiontune.cli import main


def test_demo_writes_report(tiny_toy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOTIONTUNE_TOY_MODEL", tiny_toy)
    out = tmp_path / "demo"
    rc = main(["demo", "--recipe", "lora", "--steps", "2", "--output", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and str(out / "report.html") in printed
    scores = json.loads((out / "scores.json").read_text())
    assert scores["recipe"] == "lora" and scores["steps"] == 2
    assert len(scores["rows"]) == 6  # 3 prompts x (customized, base)
    assert {r["model"] for r in scores["rows"]} == {"customized", "base"}
    for r in scores["rows"]:
        assert -1.0 <= r["motion_fidelity"] <= 1.0 and 0.0 <= r["subject_accuracy"] <= 1.0
        assert (out / r["gif"]).is_file()
    html = (out / "report.html").read_text()
    assert html.count("<tr>") == 1 + 6 + 2 and "trajectories.png" in html
    import imageio.v3 as iio

    assert iio.imread(out / "trajectories.png").ndim == 3
    assert len(list((out / "customized").glob("*.mp4"))) == 3


def test_demo_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOTIONTUNE_TOY_MODEL", str(tmp_path / "missing"))
    assert main(["demo", "--output", str(tmp_path / "d")]) == 2
    assert "toy model is not built" in capsys.readouterr().err
    assert main(["demo", "--steps", "0"]) == 2
    assert main(["demo", "--recipe", "nope"]) == 2


def test_toy_suite_is_fixed_and_well_formed():
    from motiontune.toyworld.suite import toy_scenarios, toy_suite_scenarios
    from motiontune.toyworld.world import parse_caption

    a, b = toy_scenarios(), toy_scenarios()
    assert [s.targets for s in a] == [s.targets for s in b]
    motion = [s for s in a if s.kind == "motion"]
    assert len(motion) == 10 and len({s.tags["motion"] for s in motion}) == 5
    for s in motion:
        ref = s.references[0]
        for t in s.targets:
            f = parse_caption(t)
            assert f.motion == ref.motion
            assert f.shape != ref.shape and f.color != ref.color and f.background != ref.background
    appearance = [s for s in a if s.kind == "appearance"]
    assert appearance and all(parse_caption(t).color == "pink" for s in appearance for t in s.targets)
    scen = toy_suite_scenarios()
    assert scen[0].videos[0].shape == (17, 32, 32, 3) and scen[0].scorers == ("toy",)
    assert scen[-1].images and scen[-1].images[0].shape == (32, 32, 3)
