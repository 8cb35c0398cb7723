"""The cost of SynMotion's subject-prior video bank: seconds per clip made by the frozen model.

    python benchmarks/spv_cost.py --backbone toy --clips 4 --append-results docs/RESULTS.md

Builds the bank of the recipe's default prompt list (the first ``--clips`` prompts; all with
``--clips 0``) for ``--backbone`` into a fresh temporary cache, at the backbone's default size,
sampling steps and guidance (as ``synmotion`` does), and reports the seconds per clip and the
estimated cost of the whole default list.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from results_doc import command_line, replace_section  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="toy")
    p.add_argument("--clips", type=int, default=4, help="clips to make (0: the whole default list)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the backbone's)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output-json", default=None)
    p.add_argument("--append-results", default=None)
    p.add_argument("--section", default="## SynMotion: cost of the subject-prior bank")
    args = p.parse_args(argv)
    if args.clips < 0 or (args.steps is not None and args.steps < 1) or (args.threads is not None and args.threads < 1):
        print("error: --clips must be 0 or more, --steps and --threads 1 or more", file=sys.stderr)
        return 2
    import torch

    from motiontune.backbones import load_backbone
    from motiontune.data.spv import SPVSettings, build_bank, default_prompts
    from motiontune.recipes.prompt_roles import parse_marked

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    spec = load_backbone(args.backbone)
    prompts = [parse_marked(t)[0] for t in default_prompts(spec)]
    chosen = prompts[: args.clips] if args.clips else prompts
    steps = args.steps or spec.default_steps
    settings = SPVSettings(chosen, spec.default_size, steps, float(spec.default_guidance), 0)
    with tempfile.TemporaryDirectory() as cache:
        bank = build_bank(spec, settings, cache_root=cache, progress=False)
    per_clip = bank.seconds_per_clip
    f, h, w = spec.default_size
    result = {"backbone": args.backbone, "clips": len(chosen), "default_list": len(prompts), "size": [f, h, w], "steps": steps,
              "guidance": float(spec.default_guidance), "seconds_per_clip": per_clip,
              "estimated_seconds_default_list": per_clip * len(prompts), "threads": torch.get_num_threads()}
    print(json.dumps(result))
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    if args.append_results:
        body = (f"Command: `{command_line(__file__, argv)}` — {platform.machine()}, torch {torch.__version__}, "
                f"{torch.get_num_threads()} threads.\n\n"
                f"{len(chosen)} clips of the default subject-prior list ({len(prompts)} prompts) made by the frozen "
                f"{args.backbone} model at {f}x{h}x{w}, {steps} steps, guidance {float(spec.default_guidance):g}: "
                f"**{per_clip:.2f} s per clip**, so about {per_clip * len(prompts):.0f} s for the whole list, once per "
                "model and prompt list (the bank is cached and reused by every run).")
        replace_section(args.append_results, args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
