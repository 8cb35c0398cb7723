"""The timestep probe and a tau ablation on the toy model (the paper's Table 1, in the toy world).

    python benchmarks/tau_ablation.py --seeds 0,1,2 --append-results docs/RESULTS.md

1. Probe: for the reference clip of the first ``--probe-scenarios`` motion scenarios of the toy
   suite, invert it with its caption and resample with the scenario's first target caption
   (new colour, shape and background, same motion) over the (tau_start, tau_end) grid. The
   motion score is Lucas-Kanade flow similarity to the reference, the appearance score the toy
   oracle's subject match with the edited caption. Each probe suggests a tau; the boundary is
   their median, on the grid (``--boundary`` overrides it).
2. Ablation: for every seed, the motion scenarios of the toy suite (one reference clip of a
   held-out motion, three targets that change subject and background) are run with no tuning,
   with the ``timestep`` recipe at tau = boundary + step, boundary, boundary - step, and with
   the same recipe at tau = 0 (all timesteps: the adapter trained and applied everywhere).
   Everything else (LoRA placement, rank, steps, learning rate) is the same in every row.

Results go to ``--output`` (finished cells are skipped on a re-run) and, with
``--append-results``, into a section of the results document.
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

METRICS = (
    ("toy_motion_fidelity", "motion fidelity"),
    ("toy_subject_accuracy", "subject accuracy"),
    ("toy_appearance_leakage", "leakage"),
    ("toy_background_accuracy", "background accuracy"),
)


def motion_scenarios(seed: int = 0):
    from motiontune.toyworld.suite import toy_scenarios

    return [s for s in toy_scenarios(seed) if s.kind == "motion"]


def run_probes(backbone: str, count: int, grid_step: int, steps: int | None, output: str) -> list[dict]:
    """Probe the reference of the first ``count`` motion scenarios; one summary per probe."""
    from motiontune.backbones import load_backbone
    from motiontune.probe.probe import ProbeConfig, run_probe
    from motiontune.toyworld.render import render

    spec = load_backbone(backbone, family=None if backbone == "toy" else "wan")
    summaries = []
    for scenario in motion_scenarios()[:count]:
        folder = os.path.join(output, "probe", scenario.name)
        done = os.path.join(folder, "probe.json")
        if not os.path.isfile(done):
            print(f"probe: {scenario.name}")
            run_probe(spec, render(scenario.references[0], *spec.default_size), scenario.reference_captions[0], scenario.targets[0],
                      ProbeConfig(grid_step=grid_step, num_inference_steps=steps), output_dir=folder, progress=True)
        with open(done, encoding="utf-8") as fh:
            data = json.load(fh)
        summaries.append({
            "scenario": scenario.name, "caption": data["caption"], "edit_caption": data["edit_caption"],
            "suggested_tau": data["suggestion"].get("tau"), "reason": data["suggestion"].get("reason"),
            "inversion_psnr": data["inversion"].get("psnr"), "vae_psnr": data["inversion"].get("vae_psnr"),
            "reconstruction_motion": data["reconstruction"].get("motion"),
            "tradeoff": [(r["tau_start"], r.get("motion"), r.get("appearance")) for r in data["tradeoff"]],
        })
    return summaries


def boundary_from(probes: list[dict], grid_step: int) -> float:
    taus = [p["suggested_tau"] for p in probes if p["suggested_tau"] is not None]
    if not taus:
        raise SystemExit("no probe suggested a tau; give --boundary")
    return float(grid_step * round(float(np.median(taus)) / grid_step))


def ablation_rows(boundary: float, step: int) -> list[tuple[str, float | None]]:
    """(label, tau) rows: no tuning, three taus around the boundary, all timesteps."""
    rows: list[tuple[str, float | None]] = [("no tuning", None)]
    for tau in (boundary + step, boundary, boundary - step):
        if 0 < tau < 1000:
            rows.append((f"tau = {tau:g}", tau))
    rows.append(("all timesteps (tau = 0)", 0.0))
    return rows


def run_ablation(args, boundary: float) -> dict:
    ids = [s.name for s in motion_scenarios()][: args.scenarios]
    out: dict = {}
    for label, tau in ablation_rows(boundary, args.grid_step):
        for seed in args.seeds:
            sub = "none" if tau is None else f"tau{int(tau):04d}"
            folder = os.path.join(args.output, f"seed{seed}", sub)
            recipe = "none" if tau is None else "timestep"
            cfg = BenchConfig(suite="toy", recipes=[recipe], backbone=args.backbone, output=folder, steps=args.steps,
                              train_steps=args.train_steps, seed=seed, scenarios=ids, formats=("gif",),
                              recipe_settings={} if tau is None else {"timestep": {"tau": tau}}, progress=False)
            print(f"ablation: {label}, seed {seed}")
            run_bench(cfg, log=print)
            results, _ = collect_results([folder])
            out.setdefault(label, {})[seed] = results
    return out


def summarize(cells: dict) -> dict:
    """label -> metric -> (mean over seeds of the per-seed scenario mean, std over seeds); plus seconds."""
    table = {}
    for label, by_seed in cells.items():
        stats = {}
        for key, _ in METRICS:
            per_seed = []
            for results in by_seed.values():
                vals = [float(r["metrics"][key]) for r in results
                        if isinstance(r["metrics"].get(key), (int, float)) and np.isfinite(float(r["metrics"][key]))]
                if vals:
                    per_seed.append(float(np.mean(vals)))
            stats[key] = (float(np.mean(per_seed)), float(np.std(per_seed))) if per_seed else (float("nan"), float("nan"))
        secs = [r["seconds"]["wall"] for results in by_seed.values() for r in results]
        stats["seconds"] = float(np.mean(secs)) if secs else float("nan")
        stats["cells"] = sum(len(r) for r in by_seed.values())
        table[label] = stats
    return table


def report(args, probes: list[dict], boundary: float, table: dict, total: float) -> str:
    cmd = command_line(__file__, args.argv)
    lines = [
        f"Command: `{cmd.strip()}` — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{platform.machine()}; total {total:.0f} s.",
        "",
        "**Probe** (flow-matching ODE inversion with the reference caption; edited caption for "
        "tau_end <= t < tau_start; motion = Lucas-Kanade flow similarity to the reference, appearance = toy-oracle "
        "subject match with the edited caption minus the reference's; t in the model's native units, 1000 = pure noise).",
        "",
        "| reference | edited caption | inversion PSNR (dB) | VAE PSNR (dB) | suggested tau |",
        "|---|---|---|---|---|",
    ]
    for p in probes:
        tau = "none" if p["suggested_tau"] is None else f"{p['suggested_tau']:g}"
        lines.append(f"| {p['caption']} | {p['edit_caption']} | {p['inversion_psnr']:.1f} | {p['vae_psnr']:.1f} | {tau} |")
    starts = [t for t, _, _ in probes[0]["tradeoff"]] if probes else []
    if starts:
        lines += ["", "Trade-off curve at tau_end = 0, mean over the probes (motion / appearance):", "",
                  "| tau_start | " + " | ".join(f"{s:g}" for s in starts) + " |",
                  "|---|" + "---|" * len(starts)]
        for idx, name in ((1, "motion"), (2, "appearance")):
            means = []
            for k in range(len(starts)):
                vals = [p["tradeoff"][k][idx] for p in probes if p["tradeoff"][k][idx] is not None]
                means.append(f"{np.mean(vals):.2f}" if vals else "—")
            lines.append(f"| {name} | " + " | ".join(means) + " |")
    lines += [
        "",
        f"Boundary used for the ablation: tau = {boundary:g}"
        + (" (given)." if args.boundary is not None else " (median of the probes' suggestions)."),
        "",
        f"**Ablation** on {min(args.scenarios, 10)} motion scenarios of the toy suite x 3 targets, seeds "
        f"{', '.join(map(str, args.seeds))}; `timestep` recipe (LoRA rank 4 on the joint attention, Q/K/V/O), "
        f"{args.train_steps} training steps; mean over seeds of the scenario mean, ± the std over seeds.",
        "",
        "| setting | " + " | ".join(c for _, c in METRICS) + " | s / scenario |",
        "|---|" + "---|" * (len(METRICS) + 1),
    ]
    for label, stats in table.items():
        vals = " | ".join(f"{stats[k][0]:.3f} ± {stats[k][1]:.3f}" for k, _ in METRICS)
        lines.append(f"| {label} | {vals} | {stats['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="toy", help="the packaged toy model (default) or a folder of one")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--scenarios", type=int, default=10, help="how many motion scenarios (at most 10)")
    p.add_argument("--probe-scenarios", type=int, default=3)
    p.add_argument("--grid-step", type=int, default=100)
    p.add_argument("--boundary", type=float, default=None, help="skip the probes' suggestion and use this tau")
    p.add_argument("--train-steps", type=int, default=200)
    p.add_argument("--steps", type=int, default=None, help="sampling and inversion steps (default: the model's)")
    p.add_argument("--output", default="bench/tau-ablation")
    p.add_argument("--append-results", default=None)
    p.add_argument("--section", default="## Timestep ablation (toy)")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if not args.seeds or args.scenarios < 1 or args.grid_step < 1:
        p.error("need at least one seed, one scenario and a positive grid step")
    t0 = time.time()
    probes = run_probes(args.backbone, args.probe_scenarios, args.grid_step, args.steps, args.output) if args.probe_scenarios else []
    boundary = args.boundary if args.boundary is not None else boundary_from(probes, args.grid_step)
    table = summarize(run_ablation(args, boundary))
    summary = {"probes": probes, "boundary": boundary, "table": table}
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
    print(json.dumps(table, indent=1))
    if args.append_results:
        replace_section(args.append_results, args.section, report(args, probes, boundary, table, time.time() - t0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
