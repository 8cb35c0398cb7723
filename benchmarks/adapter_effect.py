"""How much a trained adapter changes what the model makes: the same prompt and seed with the adapter
at its scale and at scale 0 (the base model), as the mean absolute pixel difference.

    python benchmarks/adapter_effect.py --cells RUN/seed0/cells \\
        --recipes lora,jointtuner,dualreal --per-recipe 3 --append-results docs/RESULTS.md

``--cells`` is a toy-suite ``cells`` folder (SCENARIO/RECIPE/ with ``adapter/`` and ``result.json``).
For the first ``--per-recipe`` scenarios (sorted) of each recipe, the first target prompt of the cell
is generated twice with the cell's adapter, at scale 1 and at scale 0, with seed 0 and the
backbone's default size and sampling steps. The difference is reported in [0, 1] pixel units
(0: the adapter changes nothing; the base model's videos of two different seeds differ by the
figure in the "two seeds" row, which sets the scale).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(__file__))
from results_doc import command_line, replace_section  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", required=True, help="a toy-suite cells folder")
    p.add_argument("--recipes", required=True, help="comma-separated recipe names as in the folder")
    p.add_argument("--per-recipe", type=int, default=3, help="scenarios per recipe (sorted by name)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output-json", default=None)
    p.add_argument("--append-results", default=None)
    p.add_argument("--section", default="## How far the trained adapters move the output (toy, joint scenarios)")
    args = p.parse_args(argv)
    if args.per_recipe < 1 or (args.threads is not None and args.threads < 1):
        print("error: --per-recipe and --threads must be 1 or more", file=sys.stderr)
        return 2
    if not os.path.isdir(args.cells):
        print(f"error: --cells {args.cells} is not a folder", file=sys.stderr)
        return 2
    recipes = [r for r in args.recipes.split(",") if r]
    if not recipes:
        print("error: --recipes names no recipe", file=sys.stderr)
        return 2
    plan: list[tuple[str, str, str]] = []  # (recipe, scenario, cell folder)
    for recipe in recipes:
        found = sorted(s for s in os.listdir(args.cells)
                       if os.path.isfile(os.path.join(args.cells, s, recipe, "result.json"))
                       and os.path.isdir(os.path.join(args.cells, s, recipe, "adapter")))
        if not found:
            print(f"error: no finished cell of {recipe} with an adapter in {args.cells}", file=sys.stderr)
            return 2
        plan += [(recipe, s, os.path.join(args.cells, s, recipe)) for s in found[: args.per_recipe]]
    import torch

    from motiontune.api import generate, load

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    base: dict[str, torch.Tensor] = {}  # the base model's video (scale 0, seed 0) of each prompt
    rows: dict[str, list[float]] = {r: [] for r in recipes}
    seeds_gap: list[float] = []
    for recipe, scenario, cell in plan:
        with open(os.path.join(cell, "result.json"), encoding="utf-8") as fh:
            prompt = json.load(fh)["videos"][0]["prompt"]
        spec, rec, _ = load(None, os.path.join(cell, "adapter"))
        on = generate(prompt, spec=spec, recipe=rec, adapter_scale=1.0, seed=0, progress=False).videos
        if prompt not in base:
            off = generate(prompt, spec=spec, recipe=rec, adapter_scale=0.0, seed=0, progress=False).videos
            other = generate(prompt, spec=spec, recipe=rec, adapter_scale=0.0, seed=1, progress=False).videos
            base[prompt] = off
            seeds_gap.append(float((off - other).abs().mean() / 2))
        diff = float((on - base[prompt]).abs().mean() / 2)
        rows[recipe].append(diff)
        print(json.dumps({"recipe": recipe, "scenario": scenario, "prompt": prompt, "mean_abs_diff": diff}), flush=True)
    result = {"cells": args.cells, "per_recipe": args.per_recipe, "rows": rows, "two_seeds": seeds_gap,
              "threads": torch.get_num_threads()}
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)

    def fmt(v: list[float]) -> str:
        return f"{sum(v) / len(v):.4f} ({min(v):.4f}-{max(v):.4f})"

    table = ["| adapter | cells | mean abs pixel difference to the base model (min-max) |", "|---|---|---|"]
    table += [f"| `{r}` at scale 1 | {len(v)} | {fmt(v)} |" for r, v in rows.items()]
    table.append(f"| base model, seed 1 against seed 0 (the scale) | {len(seeds_gap)} | {fmt(seeds_gap)} |")
    print("\n".join(table))
    if args.append_results:
        body = (f"Command: `{command_line(__file__, argv)}` — {platform.machine()}, torch {torch.__version__}, "
                f"{torch.get_num_threads()} threads.\n\n"
                "Each cell's first target prompt, generated with the cell's adapter at scale 1 and at scale 0 "
                "(the base model), seed 0, the backbone's default size and sampling steps; the difference is the "
                "mean absolute difference of the two videos in [0, 1] pixel units.\n\n" + "\n".join(table))
        replace_section(args.append_results, args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
