"""How far the dualreal branch that a step should hold still moves, per way of holding it.

On each step the dualreal recipe trains one kind (motion on clips, identity on reference images);
the adapter branch of the other kind should not move. ``alternation`` picks how it is held:

* ``optimizer`` (the default): no gradient and its optimizer does not step: it does not move;
* ``gradmask``: the authors' code's gradient mask as a zeroing after backward, the branch left in
  the optimizer: AdamW's momentum and weight decay still move it;
* ``nomask``: what the code does under its DeepSpeed ZeRO-2 setting (the optimizer steps inside
  backward, before the mask): the branch is trained on the other kind's data.

For each alternation the same seeded run (same data, same plan of motion/identity steps) is trained
for ``--steps`` steps; on every step, the L2 norm of the change of the branch that step should have
held (over all its parameters) is recorded. Reported per kind: the sum over the steps that held it,
the largest single step, and, for scale, the sum of its changes over the steps that trained it.

    python benchmarks/dualreal_drift.py --tiny wan --steps 200 --output-json drift.json
    python benchmarks/dualreal_drift.py --backbone toy --steps 200 --num-frames 17 --height 32 --width 32
    python benchmarks/dualreal_drift.py --tiny wan --steps 4          # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

import torch

from motiontune.data.dataset import Sample, TrainingData
from motiontune.recipes import make_recipe
from motiontune.recipes.dualreal import ALTERNATIONS, BRANCHES
from motiontune.training.trainer import Trainer, TrainConfig


def _l2(before: list[torch.Tensor], params: list[torch.nn.Parameter]) -> float:
    return float(torch.sqrt(sum(((p.detach().float() - b.float()) ** 2).sum() for b, p in zip(before, params))))


def reference_data(spec, num_frames: int, height: int, width: int, clips: int = 2, images: int = 2, seed: int = 0) -> TrainingData:
    """Random clips and reference images of the given size (pixels in [-1, 1])."""
    g = torch.Generator().manual_seed(seed)
    videos = [Sample(torch.rand(3, num_frames, height, width, generator=g) * 2 - 1, "a red circle moves left") for i in range(clips)]
    stills = [Sample(torch.rand(3, height, width, generator=g) * 2 - 1, "a red circle", kind="image")
              for i in range(images)]
    return TrainingData(videos, stills)


def drift(load_spec, data, steps: int, alternations=ALTERNATIONS, learning_rate: float | None = None, seed: int = 0,
          recipe_settings: dict[str, Any] | None = None, workdir: str | None = None) -> dict[str, Any]:
    """``{alternation: {kind: {held_steps, held_l2_sum, held_l2_max, trained_steps, trained_l2_sum}}}``;
    ``load_spec()`` gives a freshly loaded backbone spec for each alternation."""
    out: dict[str, Any] = {}
    for alt in alternations:
        spec = load_spec()
        recipe = make_recipe("dualreal", alternation=alt, **(recipe_settings or {}))
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            cfg = TrainConfig(output_dir=tmp, steps=steps, progress=False, checkpoint_every=0, seed=seed,
                              learning_rate=learning_rate)
            trainer = Trainer(spec, recipe, data, cfg)
            rows = {k: {"held_steps": 0, "held_l2_sum": 0.0, "held_l2_max": 0.0, "trained_steps": 0, "trained_l2_sum": 0.0}
                    for k in BRANCHES}
            plan = []
            for step in range(steps):
                _, passes, _ = trainer.step_plan(step)
                kind = passes[0].name  # the kind this step is for; the other one should be held
                before = {b: [p.detach().clone() for p in trainer.branches[b]] for b in BRANCHES}
                trainer.train_step(step)
                plan.append(kind)
                for b in BRANCHES:
                    d = _l2(before[b], trainer.branches[b])
                    r = rows[b]
                    if b == kind:
                        r["trained_steps"] += 1
                        r["trained_l2_sum"] += d
                    else:
                        r["held_steps"] += 1
                        r["held_l2_sum"] += d
                        r["held_l2_max"] = max(r["held_l2_max"], d)
        out[alt] = {**rows, "plan": "".join("m" if k == "motion" else "i" for k in plan)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--backbone", help="a model (alias, hub id, local folder, or 'toy')")
    src.add_argument("--tiny", metavar="FAMILY", help="the tiny random configuration of FAMILY (built into a temp folder)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--alternations", default=",".join(ALTERNATIONS))
    p.add_argument("--num-frames", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--lr", type=float, help="learning rate (default: the recipe's, or the model folder's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="other dualreal settings (JSON values)")
    p.add_argument("--output-json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from motiontune.backbones import load_backbone

    settings = {}
    for item in args.set:
        k, _, v = item.partition("=")
        try:
            settings[k] = json.loads(v)
        except json.JSONDecodeError:
            settings[k] = v
    with tempfile.TemporaryDirectory() as work:
        if args.tiny:
            from motiontune.testing.tiny import build_tiny

            model = build_tiny(args.tiny, os.path.join(work, f"tiny_{args.tiny}"), seed=args.seed)
        else:
            model = args.backbone
        spec = load_backbone(model)
        f0, h0, w0 = spec.default_size
        f, h, w = args.num_frames or f0, args.height or h0, args.width or w0
        lr = args.lr if args.lr is not None else spec.default_learning_rate
        data = reference_data(spec, f, h, w, seed=args.seed)
        result = drift(lambda: load_backbone(model), data, args.steps, tuple(args.alternations.split(",")), lr, args.seed,
                       settings, work)
    report = {"command": " ".join(["python", "benchmarks/dualreal_drift.py", *(argv if argv is not None else sys.argv[1:])]),
              "model": args.backbone or f"tiny {args.tiny}", "size": [f, h, w], "steps": args.steps, "learning_rate": lr,
              "settings": settings, "drift": result}
    for alt, rows in result.items():
        for b in BRANCHES:
            r = rows[b]
            print(f"{alt:9s} {b:8s} held {r['held_steps']:4d} steps: L2 sum {r['held_l2_sum']:.3e} (max {r['held_l2_max']:.3e}); "
                  f"trained {r['trained_steps']:4d} steps: L2 sum {r['trained_l2_sum']:.3e}")
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return report


if __name__ == "__main__":
    main()
