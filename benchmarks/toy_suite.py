"""Run the toy suite for some recipes on the embedded toy model and record the table.

    python benchmarks/toy_suite.py --recipes none,lora --train-steps 200 --append-results docs/RESULTS.md

Each (recipe, scenario) cell customizes the toy model on the scenario's reference (a clip of a
held-out motion, or still images of a held-out colour), generates the target prompts and
scores them with the toy oracle. The per-recipe means of motion fidelity, subject accuracy,
appearance leakage, background accuracy and wall time go into the results document.
Finished cells are kept in the output folder and skipped when the command runs again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

from motiontune.evaluation.runner import BenchConfig, collect_results, run_bench

sys.path.insert(0, os.path.dirname(__file__))
from results_doc import command_line, replace_section  # noqa: E402

COLUMNS = (
    ("toy_motion_fidelity", "motion fidelity"),
    ("toy_subject_accuracy", "subject accuracy"),
    ("toy_appearance_leakage", "leakage"),
    ("toy_background_accuracy", "background accuracy"),
    ("toy_motion_accuracy", "motion accuracy"),
)


def summarize(results: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """recipe -> scenario kind (motion / appearance / all) -> column -> mean."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for recipe in dict.fromkeys(r["recipe"] for r in results):
        rows = [r for r in results if r["recipe"] == recipe]
        out[recipe] = {}
        for kind in ("motion", "appearance"):
            sel = [r for r in rows if r.get("group") == kind]
            if not sel:
                continue
            stats = {}
            for key, _ in COLUMNS:
                vals = [float(r["metrics"][key]) for r in sel if isinstance(r["metrics"].get(key), (int, float))
                        and not np.isnan(float(r["metrics"][key]))]
                stats[key] = float(np.mean(vals)) if vals else float("nan")
            cells = {(r["scenario"]) for r in sel}
            stats["seconds_per_scenario"] = float(np.mean([r["seconds"]["wall"] for r in sel]))
            stats["scenarios"] = len(cells)
            stats["videos"] = sum(len(r["videos"]) for r in sel)
            out[recipe][kind] = stats
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", default="none,lora")
    p.add_argument("--backbone", default="toy")
    p.add_argument("--train-steps", type=int, default=200)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--output", default="bench/toy-suite")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="RECIPE.KEY=VALUE", help="recipe setting, e.g. timestep.tau=600")
    p.add_argument("--append-results", default=None)
    p.add_argument("--section", default="## Toy suite")
    args = p.parse_args(argv)
    settings: dict[str, dict] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        recipe, name = key.split(".", 1)
        settings.setdefault(recipe, {})[name] = json.loads(value) if value[:1] in "[{0123456789-" else value
    cfg = BenchConfig(suite="toy", recipes=args.recipes.split(","), backbone=args.backbone, output=args.output,
                      steps=args.steps, train_steps=args.train_steps, seed=args.seed, limit=args.limit,
                      recipe_settings=settings, formats=("gif",), progress=True)
    t0 = time.time()
    run_bench(cfg, log=print)
    results, _ = collect_results([args.output])
    table = summarize(results)
    print(json.dumps(table, indent=1))
    if args.append_results:
        cmd = command_line(__file__, argv)
        lines = ["| recipe | scenarios | " + " | ".join(c for _, c in COLUMNS) + " | s / scenario |",
                 "|---|---|" + "---|" * (len(COLUMNS) + 1)]
        for recipe, kinds in table.items():
            for kind, stats in kinds.items():
                vals = " | ".join(f"{stats[k]:.3f}" for k, _ in COLUMNS)
                lines.append(f"| {recipe} | {kind} ({stats['scenarios']}) | {vals} | {stats['seconds_per_scenario']:.0f} |")
        body = (f"Command: `{cmd.strip()}` — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
                f"{platform.machine()}; {args.train_steps} training steps per scenario; total {time.time() - t0:.0f} s.\n\n"
                + "\n".join(lines) + "\n\nMotion scenarios: one reference clip of a held-out motion; 3 targets that change the "
                "subject's shape and colour and the background. Appearance scenarios: 3 still images of a subject in the "
                "held-out colour; targets ask for it doing base motions. Leakage: fraction of the reference's differing "
                "attributes (colour, shape, background) that show in the output (0 is best). `none` is the base model "
                "without tuning.")
        replace_section(args.append_results, args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
