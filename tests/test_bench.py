"""Suites (TGVE, scenario files, video folders, registered loaders) and the bench runner end to end
on a tiny Wan: reports written and read back, resume, shards + merge."""

import csv
import json
import shutil

import numpy as np
import pytest

from motiontune.cli import main
from motiontune.data.video_io import write_image, write_video
from motiontune.errors import ConfigError, InputError
from motiontune.evaluation.runner import (
    BenchConfig,
    collect_results,
    evaluate_video,
    plan_cells,
    recipe_applies,
    run_bench,
)
from motiontune.evaluation.suites import SUITES, Scenario, load_suite, register_suite


def clip(frames=9, size=32, color=(255, 0, 0), step=2):
    video = np.zeros((frames, size, size, 3), np.uint8)
    for i in range(frames):
        video[i, 10:20, step * i : step * i + 8] = color
    return video


# ------------------------------------------------------------------------------------------
# Loaders
# ------------------------------------------------------------------------------------------

TGVE_HEADER = ["Video name", "Our GT caption", "Style Change Caption", "Object Change Caption",
               "Background Change Caption", "Multiple Changes Caption"]


def fake_tgve(root):
    (root / "DAVIS_480p" / "480p_videos").mkdir(parents=True)
    write_video(clip(), root / "DAVIS_480p" / "480p_videos" / "blackswan.mp4")
    frames = root / "youtube_480p" / "480p_frames" / "surf"
    frames.mkdir(parents=True)
    for i, f in enumerate(clip(4)):
        write_image(f, frames / f"{i:05d}.jpg")
    (root / "videvo_480p").mkdir()
    write_video(clip(), root / "videvo_480p" / "cat-in-snow.mp4")
    rows = [
        TGVE_HEADER,
        ["DAVIS Videos", "", "", "", "", ""],  # a section row: skipped
        ["blackswan", "a black swan swims", "a black swan swims, van gogh style", "a duck swims",
         "a black swan swims in the sea", "a duck swims in the sea, van gogh style"],
        ["surf", "a man surfs", "a man surfs, pixel art", "a dog surfs", "a man surfs on lava", ""],
        ["cat-in-snow", "a cat walks in snow", "", "a dog walks in snow", "", ""],
    ]
    with open(root / "LOVEU-TGVE-2023_Dataset.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return root


def test_tgve_loader(tmp_path):
    root = fake_tgve(tmp_path / "tgve")
    suite = load_suite(str(root))  # kind guessed from the CSV
    assert suite.name == "tgve"
    assert [s.id for s in suite] == ["blackswan", "surf", "cat-in-snow"]
    swan, surf, cat = suite.scenarios
    assert swan.captions == ["a black swan swims"] and swan.group == "DAVIS_480p"
    assert swan.prompts == ["a black swan swims, van gogh style", "a duck swims", "a black swan swims in the sea",
                            "a duck swims in the sea, van gogh style"]
    assert swan.videos[0].endswith("DAVIS_480p/480p_videos/blackswan.mp4")
    assert surf.videos[0].endswith("youtube_480p/480p_frames/surf") and surf.group == "youtube_480p"
    assert len(surf.prompts) == 3 and surf.metadata["edits"]["background"] == "a man surfs on lava"
    assert cat.group == "videvo_480p" and cat.prompts == ["a dog walks in snow"]
    assert [s.id for s in load_suite(f"tgve:{root}", limit=2)] == ["blackswan", "surf"]
    (root / "videvo_480p" / "cat-in-snow.mp4").unlink()
    with pytest.raises(InputError, match="cat-in-snow"):
        load_suite(f"tgve:{root}")


def test_scenario_file_loader(tmp_path):
    write_video(clip(), tmp_path / "dance.mp4")
    write_video(clip(step=1), tmp_path / "wave.mp4")
    (tmp_path / "dog").mkdir()
    for i in range(2):
        write_image(clip(1)[0], tmp_path / "dog" / f"{i}.png")
    (tmp_path / "s.yaml").write_text(
        "subjects:\n"
        "  dog: {images: [dog], caption: a photo of a dog, name: a dog}\n"
        "  cat: {image: dog/0.png, caption: a photo of a cat, name: a cat}\n"
        "motions:\n"
        "  dance: {video: dance.mp4, caption: a man is dancing, name: dancing}\n"
        "  wave: {video: wave.mp4, caption: a woman waves, name: waving}\n"
        "prompts: ['{subject} is {motion} in the snow', '{subject} is {motion} on the moon']\n"
        "scenarios:\n"
        "  - {id: plain, video: dance.mp4, caption: a man dances, prompt: a robot dances, size: [9, 32, 32]}\n"
    )
    suite = load_suite(str(tmp_path / "s.yaml"))
    assert [s.id for s in suite] == ["plain", "dog-dance", "dog-wave", "cat-dance", "cat-wave"]
    plain, dog_dance = suite.scenarios[:2]
    assert plain.size == (9, 32, 32) and plain.prompts == ["a robot dances"]
    assert plain.videos == [str(tmp_path / "dance.mp4")]
    assert dog_dance.prompts == ["a dog is dancing in the snow", "a dog is dancing on the moon"]
    assert dog_dance.images == [str(tmp_path / "dog" / "0.png"), str(tmp_path / "dog" / "1.png")]
    assert dog_dance.image_captions == ["a photo of a dog"] and dog_dance.captions == ["a man is dancing"]
    assert suite.scenarios[4].metadata == {"subject": "cat", "motion": "wave"}
    (tmp_path / "bad.yaml").write_text("motions: {a: {video: dance.mp4, caption: c}}\nprompts: ['{who} x']\n")
    with pytest.raises(InputError, match="only {subject} and {motion}"):
        load_suite(f"scenarios:{tmp_path / 'bad.yaml'}")
    (tmp_path / "bad2.json").write_text(json.dumps({"scenarios": [{"id": "x", "video": "dance.mp4", "prompt": "p"}]}))
    with pytest.raises(ConfigError, match="needs a caption"):
        load_suite(str(tmp_path / "bad2.json"))


def test_video_folder_loader(tmp_path):
    (tmp_path / "camera").mkdir()
    (tmp_path / "human").mkdir()
    write_video(clip(), tmp_path / "camera" / "pan.mp4")
    (tmp_path / "camera" / "pan.txt").write_text("the camera pans right\n\na dog runs, the camera pans right\n")
    write_video(clip(), tmp_path / "human" / "jump.mp4")
    write_video(clip(), tmp_path / "human" / "wave.mp4")
    (tmp_path / "captions.json").write_text(json.dumps(
        {"jump.mp4": "a man jumps", "human/wave.mp4": {"caption": "a girl waves", "prompts": ["a robot waves"]}}))
    suite = load_suite(f"folder:{tmp_path}")
    assert [(s.id, s.group, s.captions[0], s.prompts) for s in suite] == [
        ("camera-pan", "camera", "the camera pans right", ["a dog runs, the camera pans right"]),
        ("human-jump", "human", "a man jumps", ["a man jumps"]),
        ("human-wave", "human", "a girl waves", ["a robot waves"]),
    ]
    write_video(clip(), tmp_path / "orphan.mp4")
    with pytest.raises(InputError, match="orphan.mp4: no caption"):
        load_suite(str(tmp_path))


def test_registered_suite_and_shard_plan(monkeypatch):
    monkeypatch.setitem(SUITES, "mine", SUITES["toy"])  # restored afterwards
    register_suite("mine", lambda source: [
        {"id": f"s{k}", "videos": [clip()], "captions": ["a red square moves right"], "prompts": ["a blue square"],
         "scorers": ["toy"], "size": [9, 32, 32]} for k in range(3)
    ] + [Scenario("img", ["a dog"], images=[clip(1)[0]], image_captions=["a photo of a dog"])])
    suite = load_suite("mine")
    assert [s.id for s in suite] == ["s0", "s1", "s2", "img"] and suite.scenarios[0].scorers == ("toy",)
    recipes = ["none", "lora", "full"]
    everything = [c.id for c in plan_cells(suite, recipes)]
    assert everything[:3] == ["s0/none", "s0/lora", "s0/full"] and len(everything) == 12
    shards = [[c.id for c in plan_cells(suite, recipes, f"{i}/5")] for i in range(5)]
    assert sorted(sum(shards, [])) == sorted(everything)
    assert all(not set(a) & set(b) for k, a in enumerate(shards) for b in shards[k + 1:])
    # a recipe that takes no still images (synmotion) gets no cell on the image scenario
    with_syn = [c.id for c in plan_cells(suite, ["none", "synmotion@sample_alpha=1.0"])]
    assert with_syn == ["s0/none", "s0/synmotion@sample_alpha=1.0", "s1/none", "s1/synmotion@sample_alpha=1.0",
                        "s2/none", "s2/synmotion@sample_alpha=1.0", "img/none"]
    assert recipe_applies("lora", suite.scenarios[3]) and not recipe_applies("synmotion", suite.scenarios[3].to_dict())
    with pytest.raises(ConfigError, match="i/n"):
        plan_cells(suite, recipes, "2of3")
    with pytest.raises(ConfigError, match="unknown suite"):
        load_suite("no-such-suite")
    with pytest.raises(ConfigError, match="two scenarios with id"):
        register_suite("mine", lambda source: [Scenario("a", ["p"], images=[clip(1)[0]], image_captions=["c"])] * 2)
        load_suite("mine")


def test_evaluate_video_skips_and_toy_scorer():
    from motiontune.toyworld import caption, render, sample_scene

    scene = sample_scene(0)
    video = render(scene, num_frames=9)
    scores = evaluate_video(video, ["temporal_flickering", "flow_similarity", "clip_t"], prompt=caption(scene),
                            scorers=["toy"])
    assert 0.0 < scores["temporal_flickering"] <= 1.0
    assert scores["flow_similarity"] == "skipped: needs a reference video"
    assert scores["clip_t"].startswith("skipped: needs CLIP weights")
    assert scores["toy_found"] == 1.0 and scores["toy_subject_accuracy"] == 1.0
    with_ref = evaluate_video(video, ["flow_similarity"], reference=render(scene, num_frames=17))  # resampled to 9
    assert with_ref["flow_similarity"] > 0.5


# ------------------------------------------------------------------------------------------
# The bench, end to end on a tiny Wan
# ------------------------------------------------------------------------------------------


@pytest.fixture()
def scenario_file(tmp_path):
    write_video(clip(), tmp_path / "ref.mp4")
    path = tmp_path / "suite.yaml"
    path.write_text("scenarios:\n  - {id: slide, video: ref.mp4, caption: a red square moves right,\n"
                    "     prompts: [a blue square moves right, a green circle moves right]}\n")
    return str(path)


def test_bench_end_to_end(tiny_model_dir, scenario_file, tmp_path, capsys):
    model = tiny_model_dir("wan")
    out = tmp_path / "bench"
    common = ["bench", "--suite", scenario_file, "--recipes", "none,lora", "--backbone", model, "--train-steps", "2",
              "--steps", "2", "--num-frames", "9", "--height", "32", "--width", "32", "--output", str(out),
              "--set", "lora.rank=2"]
    # two shards sharing one output folder: the first leaves the report to the last one
    assert main([*common, "--shard", "0/2"]) == 0
    assert (out / "cells" / "slide" / "none" / "result.json").exists()
    assert not (out / "cells" / "slide" / "lora").exists() and not (out / "summary.md").exists()
    assert main([*common, "--shard", "1/2"]) == 0
    assert (out / "summary.md").exists()
    capsys.readouterr()
    assert main(["bench-merge", str(out)]) == 0
    assert "| none |" in capsys.readouterr().out

    # the unsharded run finds every cell finished: nothing runs again
    config = BenchConfig(suite=scenario_file, recipes=["none", "lora"], backbone=model, output=str(out), steps=2,
                         train_steps=2, num_frames=9, height=32, width=32, recipe_settings={"lora": {"rank": 2}})
    run = run_bench(config, log=lambda msg: None)
    assert run.ran == [] and run.skipped == ["slide/none", "slide/lora"] and run.complete
    unsharded = [c.id for c in plan_cells(load_suite(scenario_file), ["none", "lora"])]
    results, _ = collect_results([out])
    assert [r["cell"] for r in results] == unsharded

    # results read back
    lora = json.loads((out / "cells" / "slide" / "lora" / "result.json").read_text())
    assert lora["train"]["steps"] == 2 and lora["size"] == [9, 32, 32] and lora["seconds"]["train"] > 0
    none = json.loads((out / "cells" / "slide" / "none" / "result.json").read_text())
    assert none["train"] is None and none["seconds"]["train"] < 0.5
    for r in (lora, none):
        assert [v["prompt"] for v in r["videos"]] == ["a blue square moves right", "a green circle moves right"]
        for v in r["videos"]:
            assert 0.0 <= v["metrics"]["temporal_flickering"] <= 1.0
            assert -1.0 <= v["metrics"]["flow_similarity"] <= 1.0
            assert v["metrics"]["clip_t"].startswith("skipped: needs CLIP weights (--clip")
            assert all((out / f).exists() for f in v["files"]) and len(v["files"]) == 2
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["recipe"], r["prompt_index"]) for r in rows] == [("none", "0"), ("none", "1"), ("lora", "0"), ("lora", "1")]
    assert float(rows[2]["temporal_flickering"]) == pytest.approx(lora["videos"][0]["metrics"]["temporal_flickering"])
    assert "clip_t" not in rows[0]
    data = json.loads((out / "results.json").read_text())
    assert data["recipes"] == ["none", "lora"] and data["missing"] == []
    mean = np.mean([v["metrics"]["motion_smoothness"] for v in lora["videos"]])
    assert data["summary"]["lora"]["metrics"]["motion_smoothness"] == pytest.approx(mean)
    assert data["summary"]["lora"]["cells"] == 1 and data["summary"]["lora"]["videos"] == 2
    assert data["skipped"]["pickscore"].startswith("skipped: needs PickScore weights")
    md = (out / "summary.md").read_text()
    assert "| recipe | cells | videos | temporal_flickering ↑" in md and "wall s/cell" in md
    assert "| none | 1 | 2 |" in md and "| lora | 1 | 2 |" in md
    assert "`clip_t`: skipped: needs CLIP weights" in md and "motion_fidelity ↑" in md and "fvd" not in md.split("## Skipped")[0]
    page = (out / "report.html").read_text()
    assert page.count('src="cells/slide/lora/videos/') == 2 and 'src="references/slide.gif"' in page
    assert (out / "references" / "slide.gif").exists()
    assert (out / "plots" / "temporal_flickering.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # shards in separate folders merge into the same cell set
    for name, recipe in (("a", "none"), ("b", "lora")):
        (tmp_path / name / "cells" / "slide").mkdir(parents=True)
        shutil.copytree(out / "cells" / "slide" / recipe, tmp_path / name / "cells" / "slide" / recipe)
        shutil.copy(out / "bench.json", tmp_path / name / "bench.json")
    shutil.copytree(out / "references", tmp_path / "a" / "references")
    assert main(["bench-merge", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "all")]) == 0
    merged = json.loads((tmp_path / "all" / "results.json").read_text())
    assert [c["cell"] for c in merged["cells"]] == unsharded
    assert merged["summary"] == data["summary"]
    assert 'src="../a/cells/slide/none/videos/' in (tmp_path / "all" / "report.html").read_text()

    # a resumed run with other settings is refused
    with pytest.raises(ConfigError, match="other settings"):
        run_bench(BenchConfig(suite=scenario_file, recipes=["none", "lora"], backbone=model, output=str(out), steps=3,
                              train_steps=2, num_frames=9, height=32, width=32, recipe_settings={"lora": {"rank": 2}}))


def test_bench_user_mistakes(scenario_file, capsys):
    for argv, message in [
        (["bench", "--suite", scenario_file, "--backbone", "x", "--recipes", "none,nope"], "unknown recipe(s) nope"),
        (["bench", "--suite", scenario_file, "--backbone", "x", "--metrics", "clip_x"], "unknown metric(s) clip_x"),
        (["bench", "--suite", scenario_file, "--backbone", "x", "--shard", "3/2"], "need 0 <= i < n"),
        (["bench", "--backbone", "x"], "needs --suite"),
        (["bench-merge", "/no/such/dir"], "no such benchmark folder"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
