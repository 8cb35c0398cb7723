"""Joint scenarios of the toy suite (subject images + a motion clip), scenario kinds
(``--suite toy:KINDS``), recipe variants in the bench (``NAME@KEY=VALUE``) and plain recipes
trained on images and clips together."""

import json

import pytest
import torch

from motiontune.data.dataset import Sample, TrainingData
from motiontune.errors import ConfigError
from motiontune.evaluation.runner import check_recipes, split_recipe
from motiontune.evaluation.suites import load_suite
from motiontune.recipes import make_recipe
from motiontune.toyworld.world import BACKGROUNDS, HELDOUT_COLORS, parse_caption


def test_joint_scenarios_are_fixed_and_well_formed():
    from motiontune.toyworld.suite import joint_scenarios
    from motiontune.toyworld.motions import HELDOUT_MOTIONS

    a, b = joint_scenarios(), joint_scenarios()
    assert len(a) == 6 and [s.name for s in a] == [s.name for s in b] and [s.targets for s in a] == [s.targets for s in b]
    assert {s.tags["motion"] for s in a} == set(HELDOUT_MOTIONS)
    assert [s.targets for s in joint_scenarios(seed=1)] != [s.targets for s in a]
    for s in a:
        (clip,) = s.references
        images = s.image_references
        assert s.kind == "joint" and len(images) == 2 and not s.reference_as_images
        assert all(i.color in HELDOUT_COLORS and i.shape == s.tags["shape"] and i.motion == "still" for i in images)
        # the clip's subject differs from the custom subject in colour and shape
        assert clip.motion == s.tags["motion"] and clip.color not in HELDOUT_COLORS and clip.shape != s.tags["shape"]
        used = {i.background for i in images} | {clip.background}
        assert len(used) == 3 and len(s.targets) == 2
        for t in s.targets:
            f = parse_caption(t)
            assert (f.color, f.shape, f.motion) == (s.tags["color"], s.tags["shape"], s.tags["motion"])
            assert f.background in BACKGROUNDS and f.background not in used
        assert len({parse_caption(t).background for t in s.targets}) == 2


def test_suite_kinds_pick_scenarios():
    joint = load_suite("toy:joint")
    assert len(joint.scenarios) == 6 and all(s.id.startswith("joint-") and s.group == "joint" for s in joint.scenarios)
    s = joint.scenarios[0]
    assert len(s.videos) == 1 and s.videos[0].shape == (17, 32, 32, 3)
    assert len(s.images) == 2 and s.images[0].shape == (32, 32, 3) and len(s.image_captions) == 2
    assert all(c.startswith("a pink") for c in s.image_captions)
    default = load_suite("toy")
    assert len(default.scenarios) == 12 and {x.group for x in default.scenarios} == {"motion", "appearance"}
    every = load_suite("toy:all")
    assert [x.group for x in every.scenarios] == ["motion"] * 10 + ["appearance"] * 2 + ["joint"] * 6 + ["fewshot"] * 5
    assert all(len(x.videos) >= 3 and not x.images for x in every.scenarios if x.group == "fewshot")
    both = load_suite("toy:joint,motion")
    assert [x.group for x in both.scenarios] == ["motion"] * 10 + ["joint"] * 6  # suite order, not the given order
    for spec, message in (("toy:dance", r"unknown toy scenario kind\(s\) dance"), ("toy:joint,joint", "listed twice")):
        with pytest.raises(ConfigError, match=message):
            load_suite(spec)


def test_recipe_variants_parse_and_are_checked_before_running():
    assert split_recipe("jointtuner@gate=none@ait_weight=2.5") == ("jointtuner", {"gate": "none", "ait_weight": 2.5})
    assert split_recipe("lora") == ("lora", {})
    assert split_recipe("jointtuner@ait=false") == ("jointtuner", {"ait": False})
    assert check_recipes(["none", "lora@rank=2", "lora"]) == ["none", "lora@rank=2", "lora"]
    for recipes, message in (
        (["lora@rank"], "must be KEY=VALUE"),
        (["lora@rank=2@rank=3"], "rank given twice"),
        (["nope@x=1"], r"unknown recipe\(s\) nope@x=1"),
        (["none@rank=2"], "takes no settings"),
        (["lora@bogus=1"], "unknown setting"),
        (["jointtuner@gate=sideways"], "unknown gate"),
        (["lora@rank=0"], r"rank must be a whole number in \[1, 1024\]"),
    ):
        with pytest.raises(ConfigError, match=message):
            check_recipes(recipes)


def test_plain_recipe_alternates_images_and_clips_when_both_are_given(tiny_model_dir, tmp_path):
    from motiontune.backbones import load_backbone
    from motiontune.training.trainer import Trainer, TrainConfig

    spec = load_backbone(tiny_model_dir("wan"))
    video = Sample(torch.rand(3, 5, 16, 16) * 2 - 1, "a blue square orbits")
    image = Sample(torch.rand(3, 16, 16) * 2 - 1, "a pink circle stays still", kind="image")
    cfg = TrainConfig(output_dir=str(tmp_path / "a"), steps=4, progress=False, checkpoint_every=0)
    tr = Trainer(spec, make_recipe("lora", rank=2), TrainingData([video], [image]), cfg)
    assert [tr.step_plan(s)[1][0].pool for s in range(4)] == ["image", "video", "image", "video"]
    drawn = []
    real = tr._draw
    tr._draw = lambda kind, *a, **k: drawn.append(kind) or real(kind, *a, **k)
    for step in range(2):
        tr.train_step(step)
    assert drawn == ["image", "video"]
    # clips alone (or images alone) keep one kind of batch
    spec = load_backbone(tiny_model_dir("wan"))
    only = Trainer(spec, make_recipe("lora", rank=2), TrainingData([video]), TrainConfig(output_dir=str(tmp_path / "b"), steps=2, progress=False))
    assert [only.step_plan(s)[1][0].pool for s in range(2)] == ["video", "video"]


def test_toy_suite_script_runs_joint_scenarios_with_a_variant(tiny_toy, tmp_path, monkeypatch):
    monkeypatch.setenv("MOTIONTUNE_TOY_MODEL", tiny_toy)
    from test_toy_benchmarks import load_script

    suite = load_script("toy_suite")
    out = tmp_path / "joint"
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n", encoding="utf-8")
    argv = ["--suite", "toy:joint", "--recipes", "none,lora@rank=2", "--train-steps", "1", "--steps", "2", "--limit", "1",
            "--output", str(out), "--append-results", str(doc), "--section", "## Joint"]
    assert suite.main(argv) == 0
    cell = out / "cells" / "joint-orbit-pink-circle-0" / "lora@rank=2"
    result = json.loads((cell / "result.json").read_text())
    assert result["recipe"] == "lora@rank=2" and result["group"] == "joint" and result["train"]["steps"] == 1
    saved = json.loads((cell / "adapter" / "motiontune.json").read_text())
    assert saved["recipe"] == "lora" and saved["config"]["rank"] == 2
    metrics = result["metrics"]
    assert 0.0 <= metrics["toy_appearance_leakage"] <= 1.0 or metrics["toy_appearance_leakage"] is None
    assert "| lora@rank=2 | joint | 1 x 1 (1 cell) |" in doc.read_text()
    # the same folder cannot take another suite's cells
    assert suite.main(["--recipes", "none", "--train-steps", "1", "--steps", "2", "--limit", "1", "--output", str(out)]) == 2
    assert not (out / "cells" / "motion-orbit-0").exists()
