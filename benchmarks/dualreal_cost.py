"""Trainable parameters and seconds per training step of ``dualreal`` against ``lora``, measured in
one run on each model (so that the ratios compare like with like on a shared CPU).

Models (``--models``, comma list): ``toy`` (the packaged toy model, with its VAE: clips and images
as pixels), ``cogvideox-2b`` (the published CogVideoX-2B denoiser with random weights, built by
``benchmarks/speed.py``'s ``build_random_spec``: denoiser only, data as random latents, random text
embeddings of T5-XXL's shape), or ``tiny:FAMILY`` (the tiny random configuration, for smoke tests).
For each model, each recipe trains a freshly loaded copy through the ``Trainer`` (batch 1, fp32,
AdamW), ``--warmup`` untimed steps, then ``--steps`` timed ones. A dualreal step is either a motion
step (a clip) or an identity step (a one-frame image), drawn with probability 0.5: its times are
reported per kind; the lora recipe, given the same clip and image, trains on the image on even steps
and on the clip on odd ones: the motion-step ratio (dualreal's motion steps against lora's clip
steps) is the like-for-like one. Order of the recipes alternates between models to spread drift of the shared CPU.

    # the lead's run (CPU-sized input; minutes)
    python benchmarks/dualreal_cost.py --models toy,cogvideox-2b --num-frames 9 --height 64 --width 64 \
        --warmup 2 --steps 10 --threads 2 --output-json dualreal_cost.json
    # smoke test
    python benchmarks/dualreal_cost.py --models tiny:wan --num-frames 5 --height 16 --width 16 --warmup 1 --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

import torch

from motiontune.data.dataset import Sample, TrainingData
from motiontune.recipes import make_recipe
from motiontune.training.trainer import Trainer, TrainConfig

CAPTION = "a red circle moves left"
IMAGE_CAPTION = "a red circle"


def _speed_module():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import speed  # noqa: PLC0415 - benchmarks/speed.py

    return speed


def load_model(name: str, workdir: str, seed: int = 0):
    """(spec, denoiser_only) of ``toy``, ``cogvideox-2b`` / ``wan2.1-1.3b`` (random weights) or ``tiny:FAMILY``."""
    from motiontune.backbones import load_backbone

    if name == "toy":
        from motiontune.toyworld.demo import toy_model_path

        return load_backbone(toy_model_path()), False
    if name.startswith("tiny:"):
        from motiontune.testing.tiny import build_tiny

        family = name.split(":", 1)[1]
        folder = os.path.join(workdir, f"tiny_{family}")
        if not os.path.isdir(folder):
            build_tiny(family, folder, seed=seed)
        return load_backbone(folder), False
    speed = _speed_module()
    if name not in speed.RANDOM_CONFIGS:
        raise SystemExit(f"unknown model {name!r}: toy, tiny:FAMILY or one of {', '.join(speed.RANDOM_CONFIGS)}")
    return speed.build_random_spec(name, "cpu", torch.float32, seed=seed), True


def make_data(spec, denoiser_only: bool, f: int, h: int, w: int, seed: int = 0) -> TrainingData:
    """One clip and one reference image (pixels, or random latents for a denoiser-only model)."""
    g = torch.Generator().manual_seed(seed + 1)
    if denoiser_only:
        shape = spec.latent_shape(f, h, w)[1:]
        clip = Sample(None, CAPTION, latents=torch.randn(shape, generator=g))
        image = Sample(None, IMAGE_CAPTION, kind="image", latents=torch.randn((shape[0], 1, *shape[2:]), generator=g))
        return TrainingData([clip], [image])
    return TrainingData([Sample(torch.rand(3, f, h, w, generator=g) * 2 - 1, CAPTION)],
                        [Sample(torch.rand(3, h, w, generator=g) * 2 - 1, IMAGE_CAPTION, kind="image")])


def measure(spec, recipe, data, warmup: int, steps: int, workdir: str, seed: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=workdir) as out:
        trainer = Trainer(spec, recipe, data, TrainConfig(output_dir=out, steps=warmup + steps, progress=False,
                                                         checkpoint_every=0, seed=seed))
        times: dict[str, list[float]] = {}
        for step in range(warmup + steps):
            _, passes, _ = trainer.step_plan(step)
            kind = passes[0].name or passes[0].pool
            t0 = time.perf_counter()
            trainer.train_step(step)
            dt = time.perf_counter() - t0
            if step >= warmup:
                times.setdefault(kind, []).append(dt)
        every = [t for ts in times.values() for t in ts]
        return {"trainable_parameters": sum(p.numel() for p in trainer.params),
                "parameters_by_branch": {b: sum(p.numel() for p in ps) for b, ps in trainer.branches.items()},
                "seconds_per_step": statistics.median(every), "mean_seconds_per_step": statistics.fmean(every),
                "by_kind": {k: {"steps": len(ts), "median_seconds": statistics.median(ts)} for k, ts in times.items()}}


def run_model(name: str, args: argparse.Namespace, workdir: str, order: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for recipe_name in order:
        spec, denoiser_only = load_model(name, workdir, args.seed)
        f0, h0, w0 = spec.default_size
        f, h, w = args.num_frames or f0, args.height or h0, args.width or w0
        settings = {"rank": args.lora_rank, "alpha": float(args.lora_rank)} if recipe_name == "lora" else {"hidden": args.hidden}
        recipe = make_recipe(recipe_name, **settings)
        result = measure(spec, recipe, make_data(spec, denoiser_only, f, h, w, args.seed), args.warmup, args.steps, workdir, args.seed)
        out[recipe_name] = {**result, "settings": settings, "size": [f, h, w], "blocks": len(spec.block_sites())}
        del spec, recipe
    d, lo = out["dualreal"], out["lora"]
    motion = d["by_kind"].get("motion", {}).get("median_seconds")
    lora_clip = lo["by_kind"].get("video", {}).get("median_seconds")
    out["ratios"] = {
        "trainable_parameters": d["trainable_parameters"] / lo["trainable_parameters"],
        "seconds_per_step": d["seconds_per_step"] / lo["seconds_per_step"],
        "motion_step_seconds": None if motion is None or lora_clip is None else motion / lora_clip,
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="toy,cogvideox-2b", help="comma list: toy, cogvideox-2b, wan2.1-1.3b, tiny:FAMILY")
    p.add_argument("--num-frames", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64, help="dualreal adapter width")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/dualreal_cost.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": platform.platform(),
        "threads": torch.get_num_threads(), "models": {},
    }
    with tempfile.TemporaryDirectory() as work:
        for i, name in enumerate(m.strip() for m in args.models.split(",") if m.strip()):
            order = ("lora", "dualreal") if i % 2 == 0 else ("dualreal", "lora")
            report["models"][name] = r = run_model(name, args, work, order)
            kinds = ", ".join(f"{k} {v['median_seconds']:.3f} s" for k, v in sorted(r["dualreal"]["by_kind"].items()))
            print(f"{name}: lora {r['lora']['trainable_parameters']:,} params, {r['lora']['seconds_per_step']:.3f} s/step; "
                  f"dualreal {r['dualreal']['trainable_parameters']:,} params, {r['dualreal']['seconds_per_step']:.3f} s/step ({kinds}); "
                  f"ratios: params {r['ratios']['trainable_parameters']:.2f}, s/step {r['ratios']['seconds_per_step']:.2f}, "
                  f"motion step {r['ratios']['motion_step_seconds'] if r['ratios']['motion_step_seconds'] is None else round(r['ratios']['motion_step_seconds'], 2)}")
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return report


if __name__ == "__main__":
    main()
