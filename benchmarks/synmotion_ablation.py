"""SynMotion in the toy world: the few-shot scenarios, the paper's ablation, other methods, the SPV cost.

    python benchmarks/synmotion_ablation.py --seeds 0,1,2 --train-steps 300 --output bench/synmotion
    python benchmarks/synmotion_ablation.py --variants lora-only,full,none --seeds 0 --limit 1 --train-steps 4 \\
        --steps 2 --spv-steps 2 --output /tmp/sm-smoke          # a smoke test
    python benchmarks/synmotion_ablation.py --table-only --output bench/synmotion --seeds 0,1,2

Each cell tunes the embedded toy model on one few-shot scenario
(:func:`motiontune.toyworld.fewshot.fewshot_scenarios`: 3 reference clips of a held-out motion, each
its own subject and background), generates the scenario's targets (that motion, new subjects, new
backgrounds) and scores them with the toy oracle against the first reference: motion accuracy (the
oracle's best-fitting motion is the asked one), subject accuracy, motion fidelity, leakage,
background accuracy. Variants (``--variants``): the ablation of the paper (LoRA only; + motion
residue; + subject residue; + refiner; + SPV alternation, alpha 0.75 = ``full``; ``full`` is alpha
0.75 and ``no-spv`` alpha 1.0) and the other methods (``none``: the base model, ``lora``,
``motiondirector``, ``dualreal``, ``jointtuner``), all on the same clips. Finished cells
(``OUTPUT/seed<N>/<variant>/<scenario>.json``) are skipped when the command runs again. The SPV bank
is made once into ``OUTPUT/spv-cache`` and its seconds per clip are reported.

The table: per variant, mean and 95% t-interval over the finished (scenario, seed) cells.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from toy_suite import mean_interval  # noqa: E402

ABLATION = {
    "lora-only": ("synmotion", {"motion_residue": False, "subject_residue": False, "refiner": False, "sample_alpha": 1.0}),
    "+motion-residue": ("synmotion", {"subject_residue": False, "refiner": False, "sample_alpha": 1.0}),
    "+subject-residue": ("synmotion", {"refiner": False, "sample_alpha": 1.0}),
    "no-spv": ("synmotion", {"sample_alpha": 1.0}),  # + refiner
    "full": ("synmotion", {}),  # + SPV alternation, alpha 0.75
}
OTHERS = {name: (name, {}) for name in ("none", "lora", "motiondirector", "dualreal", "jointtuner")}
VARIANTS = {**ABLATION, **OTHERS}
COLUMNS = ("toy_motion_accuracy", "toy_subject_accuracy", "toy_motion_fidelity", "toy_appearance_leakage", "toy_background_accuracy")


def run_cell(scenario, variant: str, seed: int, args, spv_cache: str) -> dict:
    from motiontune import api
    from motiontune.toyworld.plugin import bench_scores
    from motiontune.toyworld.render import render

    recipe, settings = VARIANTS[variant]
    clips = [render(s) for s in scenario.references]
    captions = list(scenario.reference_captions)
    t0 = time.perf_counter()
    info: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        adapter = None
        if recipe != "none":
            adapter = os.path.join(tmp, "adapter")
            if recipe == "synmotion":
                settings = {**settings, "spv_cache": spv_cache, **({"spv_steps": args.spv_steps} if args.spv_steps else {})}
            api.train("toy", videos=clips, captions=captions, output_dir=adapter, recipe=recipe, recipe_settings=settings,
                      steps=args.train_steps, seed=seed, progress=False)
            meta = json.load(open(os.path.join(adapter, "motiontune.json")))
            info = {"motion": meta.get("config", {}).get("motion"), "spv": meta.get("synmotion", {}).get("spv")}
        trained = time.perf_counter()
        out = api.generate(list(scenario.targets), adapter=adapter, backbone="toy", steps=args.steps, seed=seed, progress=False)
    from motiontune.evaluation.runner import video_to_uint8

    per_prompt = [bench_scores(video_to_uint8(v), p, clips[0]) for v, p in zip(out.videos, scenario.targets)]
    metrics = {k: sum(p[k] for p in per_prompt) / len(per_prompt) for k in COLUMNS}
    return {"scenario": scenario.name, "variant": variant, "seed": seed, "metrics": metrics, "per_prompt": per_prompt,
            "seconds": {"train": trained - t0, "total": time.perf_counter() - t0}, **info}


def table(output: str, seeds: list[int], variants: list[str]) -> str:
    lines = ["| variant | " + " | ".join(c.replace("toy_", "").replace("_", " ") for c in COLUMNS) + " | cells |",
             "|---" * (len(COLUMNS) + 2) + "|"]
    spv = []
    for v in variants:
        cells = []
        for seed in seeds:
            folder = os.path.join(output, f"seed{seed}", v)
            if os.path.isdir(folder):
                cells += [json.load(open(os.path.join(folder, f))) for f in sorted(os.listdir(folder)) if f.endswith(".json")]
        spv += [c["spv"]["seconds_per_clip"] for c in cells if c.get("spv") and c["spv"].get("seconds_per_clip")]
        cols = [mean_interval([c["metrics"][k] for c in cells]).text(len(cells)) for k in COLUMNS]
        lines.append(f"| {v} | " + " | ".join(cols) + f" | {len(cells)} |")
    if spv:
        lines.append("")
        lines.append(f"SPV bank on the toy model: {sum(spv) / len(spv):.2f} s per clip (mean of {len(spv)} bank build(s)).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0")
    p.add_argument("--train-steps", type=int, default=300)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the toy model's)")
    p.add_argument("--references", type=int, default=3)
    p.add_argument("--spv-steps", type=int, default=None, help="sampling steps of the SPV bank (default: the toy model's)")
    p.add_argument("--limit", type=int, default=None, help="first N scenarios only")
    p.add_argument("--output", default="bench/synmotion")
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        print(f"error: unknown variant(s) {bad}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    if not args.table_only:
        from motiontune.toyworld.fewshot import fewshot_scenarios

        spv_cache = os.path.join(args.output, "spv-cache")
        for seed in seeds:
            scenarios = fewshot_scenarios(seed=0, references=args.references)[: args.limit]  # fixed scenarios, seeded runs
            for v in variants:
                folder = os.path.join(args.output, f"seed{seed}", v)
                os.makedirs(folder, exist_ok=True)
                for s in scenarios:
                    path = os.path.join(folder, f"{s.name}.json")
                    if os.path.exists(path):
                        continue
                    result = run_cell(s, v, seed, args, spv_cache)
                    tmp = path + ".tmp"
                    with open(tmp, "w") as fh:
                        json.dump(result, fh, indent=1)
                    os.replace(tmp, path)
                    print(f"seed {seed} {v} {s.name}: " + ", ".join(f"{k[4:]} {result['metrics'][k]:.3f}" for k in COLUMNS), flush=True)
    print(table(args.output, seeds, variants))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
