"""The ``bench``, ``bench-merge`` and ``eval`` subcommands (registered with motiontune.cli_shared, loaded by motiontune.cli)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from motiontune.cli_shared import add_model_arguments, add_size_arguments, csv_list, register_command
from motiontune.errors import ConfigError, InputError

BENCH_EXAMPLE = """example:
  motiontune bench --suite tgve:/data/loveu-tgve-2023 --recipes none,lora --backbone wan2.1-1.3b \\
      --train-steps 400 --steps 30 --output bench/tgve --clip openai/clip-vit-base-patch32
  motiontune bench --suite scenarios.yaml --recipes none,lora,full --backbone toy --shard 0/2 --output bench/s
  motiontune bench --suite scenarios.yaml --recipes none,lora,full --backbone toy --shard 1/2 --output bench/s
  motiontune bench-merge bench/s        # after both shards: results.csv/json, summary.md, report.html"""

MERGE_EXAMPLE = """example:
  motiontune bench-merge bench/run                      # shards that shared one --output
  motiontune bench-merge bench/a bench/b --output bench/all"""

EVAL_EXAMPLE = """example:
  motiontune eval --video out.mp4 --reference ref.mp4 --prompt "a bear dances in the snow" \\
      --clip openai/clip-vit-base-patch32 --json scores.json
  motiontune eval --video outputs/dance/ --metrics temporal_flickering,motion_smoothness"""


def _add_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip", help="CLIP weights, folder or hub id (e.g. openai/clip-vit-base-patch32): clip_t, clip_i, clip_temporal_consistency")
    p.add_argument("--dino", help="DINO weights, folder or hub id (e.g. facebook/dino-vits16): dino_i, dino_subject_consistency")
    p.add_argument("--pickscore", help="PickScore weights, folder or hub id (yuvalkirstain/PickScore_v1)")
    p.add_argument("--pickscore-processor", help="PickScore's processor (default: the --pickscore folder, else laion/CLIP-ViT-H-14-laion2B-s32B-b79K)")
    p.add_argument("--i3d", help="TorchScript I3D file (i3d_torchscript.pt) for fvd")
    p.add_argument("--raft", help="TorchScript RAFT file (torchvision's RAFT, scripted; see docs/metrics.md) for raft_dynamic_degree")
    p.add_argument("--cotracker", help="TorchScript point tracker (CoTracker, wrapped; see docs/metrics.md) for cotracker_motion_fidelity")
    p.add_argument("--metrics", help="comma list of metrics (default: all; those lacking weights are reported as skipped)")


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", help="toy, tgve:DIR, scenarios:FILE, folder:DIR, or a path (kind guessed)")
    p.add_argument("--recipes", help="comma list of recipes; 'none' = the base model without tuning (default none,lora)")
    add_model_arguments(p)
    p.add_argument("--output", help="output folder (default bench/)")
    p.add_argument("--train-steps", type=int, help="training steps per cell (default 300)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the backbone's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    add_size_arguments(p)
    p.add_argument("--seed", type=int)
    p.add_argument("--lr", type=float, help="learning rate for every recipe (default: each recipe's)")
    p.add_argument("--set", action="append", metavar="[RECIPE.]KEY=VALUE", help="recipe setting, for all recipes or one; repeatable")
    p.add_argument("--shard", help="i/n: run every n-th cell starting at i (0-based)")
    p.add_argument("--limit", type=int, help="only the first N scenarios")
    p.add_argument("--scenarios", help="comma list of scenario ids to run")
    p.add_argument("--merge", action="store_true", help="only merge the results in --output and write the reports")
    p.add_argument("--progress", action="store_true", help="show training / sampling progress bars")
    _add_weights(p)


def _recipe_settings(items: list[str] | None) -> dict[str, dict[str, Any]]:
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects [RECIPE.]KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        recipe, _, name = key.strip().rpartition(".")
        out.setdefault(recipe or "*", {})[name.replace("-", "_")] = yaml.safe_load(value)
    return out


def _weights(s: dict[str, Any]):
    from motiontune.evaluation.learned import WeightSources

    return WeightSources.from_settings(s)


def run_bench_command(s: dict[str, Any]) -> int:
    from motiontune.evaluation.learned import LearnedScorer
    from motiontune.evaluation.runner import BenchConfig, merge_results, run_bench

    output = s.pop("output", "bench")
    if s.pop("merge", False):
        weights = _weights(s)
        reports = merge_results([output], scorer=LearnedScorer(weights, device=s.pop("device", None) or "cpu"))
        _print_reports(reports)
        return 0
    suite, backbone = s.pop("suite", None), s.pop("backbone", None)
    if not suite:
        raise ConfigError("bench needs --suite (toy, tgve:DIR, scenarios:FILE, folder:DIR or a path)")
    if not backbone:
        raise ConfigError("bench needs --backbone (an alias, hub id, folder or 'toy')")
    train_settings = {}
    if "lr" in s:
        train_settings["learning_rate"] = s.pop("lr")
    metrics = csv_list(s.pop("metrics", None)) or None
    scenarios = csv_list(s.pop("scenarios", None)) or None
    config = BenchConfig(
        suite=suite, recipes=csv_list(s.pop("recipes", "none,lora")), backbone=backbone, output=output,
        family=s.pop("family", None), steps=s.pop("steps", None), train_steps=s.pop("train_steps", 300),
        num_frames=s.pop("num_frames", None), height=s.pop("height", None), width=s.pop("width", None),
        guidance=s.pop("guidance", None), seed=s.pop("seed", 0), shard=s.pop("shard", None) or (0, 1),
        metrics=metrics, weights=_weights(s), device=s.pop("device", None), dtype=s.pop("dtype", "fp32"),
        recipe_settings=_recipe_settings(s.pop("set", None)), train_settings=train_settings,
        limit=s.pop("limit", None), scenarios=scenarios, progress=s.pop("progress", False),
    )
    if s:
        raise ConfigError(f"unknown setting(s) for bench: {', '.join(sorted(s))}")
    run = run_bench(config)
    print(f"{len(run.ran)} cell(s) run, {len(run.skipped)} already done, of {len(run.planned)} in this shard")
    if run.reports:
        _print_reports(run.reports)
    return 0


def _print_reports(reports: dict[str, str]) -> None:
    for kind in ("markdown", "html", "csv", "json"):
        if kind in reports:
            print(reports[kind])
    if "markdown" in reports:
        print()
        print(Path(reports["markdown"]).read_text(encoding="utf-8").split("\n\n", 3)[-1].split("\n## ")[0].strip())


def _merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", help="benchmark output folder(s)")
    p.add_argument("--output", help="where to write the reports (default: the first folder)")
    p.add_argument("--i3d", help="TorchScript I3D file, to compute fvd per recipe")
    p.add_argument("--device")


def run_merge_command(s: dict[str, Any]) -> int:
    from motiontune.evaluation.learned import LearnedScorer, WeightSources
    from motiontune.evaluation.runner import merge_results

    dirs = s.pop("dirs")
    scorer = LearnedScorer(WeightSources(i3d=s.pop("i3d", None)), device=s.pop("device", None) or "cpu")
    reports = merge_results(dirs, output=s.pop("output", None), scorer=scorer)
    if s:
        raise ConfigError(f"unknown setting(s) for bench-merge: {', '.join(sorted(s))}")
    _print_reports(reports)
    return 0


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", action="append", help="video file or folder of videos to score; repeatable")
    p.add_argument("--reference", help="reference video (motion metrics, and CLIP-I / DINO-I frames)")
    p.add_argument("--reference-image", action="append", help="reference image(s) for clip_i / dino_i; repeatable")
    p.add_argument("--prompt", help="the prompt the videos were generated from (default: a VIDEO.txt beside each video)")
    p.add_argument("--toy", action="store_true", help="add the toy-world oracle metrics (toy prompts)")
    p.add_argument("--json", help="write the scores to this JSON file")
    p.add_argument("--device", help="device for the learned metrics (default: cuda if available)")
    p.add_argument("--config", help="YAML file with settings; flags override it")
    _add_weights(p)


def _video_files(paths: list[str]) -> list[Path]:
    from motiontune.data.video_io import READ_VIDEO_EXTENSIONS, natural_sort_key

    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted((f for f in path.iterdir() if f.suffix.lower() in READ_VIDEO_EXTENSIONS and not f.name.startswith(".")),
                           key=lambda f: natural_sort_key(f.name))
            if not found:
                raise InputError(f"{p}: no videos in this folder")
            # one file per clip: `generate --format mp4,gif` writes both; keep the first format listed
            rank = {ext: k for k, ext in enumerate(READ_VIDEO_EXTENSIONS)}
            best: dict[str, Path] = {}
            for f in found:
                if f.stem not in best or rank[f.suffix.lower()] < rank[best[f.stem].suffix.lower()]:
                    best[f.stem] = f
            out.extend(f for f in found if best[f.stem] == f)
        elif path.exists():
            out.append(path)
        else:
            raise InputError(f"{p}: file does not exist")
    return out


def _sidecar_prompt(video: Path) -> str | None:
    from motiontune.utils.files import read_text

    txt = video.with_suffix(".txt")
    if txt.is_file():
        lines = [ln.strip() for ln in read_text(str(txt)).splitlines() if ln.strip()]
        return lines[0] if lines else None
    return None


def run_eval_command(s: dict[str, Any]) -> int:
    from motiontune.api import check_output_folder, resolve_device
    from motiontune.data.video_io import list_frame_files, read_image, read_video
    from motiontune.evaluation.learned import LearnedScorer
    from motiontune.evaluation.runner import check_metric_names, default_metrics, evaluate_video, match_reference, summarize_scores

    videos = _video_files(list(s.pop("video", None) or []))
    if not videos:
        raise ConfigError("eval needs --video (a video file or a folder of videos)")
    metrics = check_metric_names(csv_list(s.pop("metrics", None)) or default_metrics())
    scorer = LearnedScorer(_weights(s), device=resolve_device(s.pop("device", None)))
    scorer.check(metrics)
    reference_path = s.pop("reference", None)
    reference_set: list[Path] = []  # a folder of reference videos: the reference set of fvd
    if reference_path and Path(reference_path).is_dir() and not list_frame_files(reference_path):
        reference_set = _video_files([reference_path])
    reference = read_video(reference_path).frames if reference_path and not reference_set else None
    images = [read_image(p) for p in s.pop("reference_image", None) or []] or None
    prompt = s.pop("prompt", None)
    scorers = ("toy",) if s.pop("toy", False) else ()
    json_path = s.pop("json", None)
    if s:
        raise ConfigError(f"unknown setting(s) for eval: {', '.join(sorted(s))}")
    if json_path and os.path.isdir(json_path):
        raise InputError(f"--json {json_path}: is a folder; give the name of the JSON file to write")
    if json_path:
        check_output_folder(os.path.dirname(os.path.abspath(json_path)))
    rows = []
    clips = []
    for path in videos:
        frames = read_video(path).frames
        clips.append(frames)
        text = prompt or _sidecar_prompt(path)
        if scorers and not text:
            raise InputError(f"{path}: no prompt for the toy metrics (give --prompt, or write it in {path.with_suffix('.txt').name})")
        scores = evaluate_video(frames, [m for m in metrics if m != "fvd"], reference=reference, prompt=text,
                                reference_images=images, scorer=scorer, scorers=scorers)
        rows.append({"video": str(path), "prompt": text, "metrics": scores})
    means, skipped = summarize_scores([r["metrics"] for r in rows])
    set_metrics = {}
    if "fvd" in metrics:
        refs = [read_video(p).frames for p in reference_set] or ([reference] if reference is not None else [])
        f, h, w = clips[0].shape[:3]
        set_metrics["fvd"] = scorer.fvd([match_reference(c, f, h, w) for c in clips], [match_reference(r, f, h, w) for r in refs])
    _print_table(rows, means, skipped, set_metrics)
    if json_path:
        from motiontune.evaluation.runner import is_number, write_json

        counts = {n: sum(is_number(r["metrics"].get(n)) for r in rows) for n in means}
        write_json(json_path, {"videos": rows, "mean": means, "mean_of_videos": counts, "skipped": skipped,
                               "set_metrics": set_metrics})
        print(f"scores written to {json_path}")
    return 0


def _print_table(rows: list[dict[str, Any]], means: dict[str, Any], skipped: dict[str, str], set_metrics: dict[str, Any]) -> None:
    from motiontune.evaluation.runner import is_number, is_undefined

    names = [n for n in means]
    header = ["video", *names]
    lines = []
    for r in rows:
        values = [r["metrics"].get(n) for n in names]
        lines.append([os.path.basename(r["video"]), *[f"{v:.4f}" if is_number(v) else "n/a" for v in values]])
    if len(rows) > 1:  # each mean says how many videos it covers when some have no number
        counts = {n: sum(is_number(r["metrics"].get(n)) for r in rows) for n in names}
        lines.append(["mean", *[(f"{means[n]:.4f}" if is_number(means[n]) else "n/a")
                                + (f" ({counts[n]} of {len(rows)})" if counts[n] < len(rows) else "") for n in names]])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    for line in [header, *lines]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    for name, value in set_metrics.items():
        print(f"{name}: {value:.4f}" if is_number(value) else f"{name}: {value}")
    for r in rows:  # why a metric has no number for a video
        for name, value in r["metrics"].items():
            if is_undefined(value):
                print(f"{name} {value.replace('n/a: ', 'n/a for ' + os.path.basename(r['video']) + ': ', 1)}")
    for name, message in skipped.items():
        print(f"{name}: {message}")


register_command("bench", "tune each recipe on each scenario of a suite, generate, score, report", _bench_arguments,
                 run_bench_command, BENCH_EXAMPLE)
register_command("bench-merge", "merge benchmark results (shards) and write the reports", _merge_arguments,
                 run_merge_command, MERGE_EXAMPLE)
register_command("eval", "score existing videos with the metrics", _eval_arguments, run_eval_command, EVAL_EXAMPLE)

__all__ = ["run_bench_command", "run_eval_command", "run_merge_command"]
