"""Seconds per training step of follow_your_motion's temporal stage: sparse motion sampling (every
k-th frame, adaptive RoPE, motion loss) against the full clip (``sparse_stride=1``), as a ratio in one run.

Two trainers, each on its own copy of the model, run the recipe with ``spatial_steps=1`` (one untimed
spatial step); then both do ``--warmup`` untimed and ``--steps`` timed temporal steps, alternating
step by step (and alternating which goes first) so that both see the same machine load. The paper
reports 781 s against 2053 s per customization (2.6x) for Wan2.1 at 81 frames with k = 5.

Model sources (exactly one):

* ``--backbone SOURCE`` (``toy``, an alias, a folder): the reference clip ``--video`` (default the toy
  world's orbit clip) at ``--num-frames/--height/--width`` (default the model's size);
* ``--random-config wan2.1-1.3b``: the full-size architecture with random weights from
  ``benchmarks/speed.py`` (denoiser only). Its clip is random pixels of the given size, and "encoding"
  returns random latents of the VAE's shape (the step's cost does not depend on their values); the
  heads are split half/half without classification (``head_split=half``: the split does not change
  the step's cost).

Examples::

    python benchmarks/fym_sparse_speed.py --backbone toy --stride 3 --steps 10 --threads 2
    python benchmarks/fym_sparse_speed.py --random-config wan2.1-1.3b --num-frames 81 --height 64 --width 64 \\
        --steps 3 --warmup 1 --rank 16 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from speed import build_random_spec, machine_info  # noqa: E402

from motiontune.data.dataset import Sample, TrainingData  # noqa: E402
from motiontune.recipes import make_recipe  # noqa: E402
from motiontune.training.trainer import Trainer, TrainConfig  # noqa: E402

DEFAULT_VIDEO = os.path.join(os.path.dirname(__file__), "..", "motiontune", "toyworld", "assets", "reference_orbit.mp4")


def _spec(args):
    if args.random_config:
        spec = build_random_spec(args.random_config, args.device, torch.float32)

        def encode_video(pixels, sample=False, generator=None):  # a stand-in VAE: random latents of the right shape
            b, _, f, h, w = pixels.shape
            return torch.randn(spec.latent_shape(f, h, w, batch=b), generator=torch.Generator().manual_seed(f))

        spec.encode_video = encode_video
        return spec
    from motiontune.backbones import load_backbone

    return load_backbone(args.backbone, device=args.device)


def _data(spec, args):
    f, h, w = spec.default_size if not args.random_config else (81, 480, 832)
    f, h, w = args.num_frames or f, args.height or h, args.width or w
    if args.random_config:
        pixels = torch.rand(3, f, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1
        return TrainingData([Sample(pixels, "a dog runs on the beach", source="random")]), (f, h, w)
    from motiontune.api import prepare_training_data

    return prepare_training_data(spec, [args.video], [args.caption], f, h, w), (f, h, w)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--backbone")
    src.add_argument("--random-config", choices=["wan2.1-1.3b"])
    p.add_argument("--video", default=DEFAULT_VIDEO)
    p.add_argument("--caption", default="a red circle orbits on a black background")
    p.add_argument("--num-frames", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--stride", type=int, default=5, help="sparse_stride of the sparse case (default 5, the paper's)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--steps", type=int, default=5, help="timed temporal steps per case")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.add_argument("--output-json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = {"sparse": args.stride, "full": 1}
    trainers, data_size = {}, None
    tmp = tempfile.mkdtemp(prefix="fym-speed-")
    total = 1 + args.warmup + args.steps
    for name, k in cases.items():
        spec = _spec(args)
        data, data_size = _data(spec, args)
        settings = {"rank": args.rank, "sparse_stride": k, "spatial_steps": 1}
        if args.random_config:
            settings["head_split"] = "half"
        recipe = make_recipe("follow_your_motion", **settings)
        cfg = TrainConfig(output_dir=os.path.join(tmp, name), steps=total, progress=False, checkpoint_every=0,
                          learning_rate=spec.default_learning_rate or 1e-4)
        trainers[name] = Trainer(spec, recipe, data, cfg, {"size": list(data_size)})
        trainers[name].train_step(0)  # the spatial step, untimed
    times: dict[str, list[float]] = {n: [] for n in cases}
    frames: dict[str, list[int]] = {n: [] for n in cases}
    for i in range(args.warmup + args.steps):
        order = list(cases) if i % 2 == 0 else list(reversed(cases))
        for name in order:
            tr = trainers[name]
            seen = []
            handle = tr.spec.denoiser.register_forward_pre_hook(
                lambda m, a, kw: seen.append(int(kw["hidden_states"].shape[2])), with_kwargs=True)
            t0 = time.perf_counter()
            tr.train_step(1 + i)
            dt = time.perf_counter() - t0
            handle.remove()
            if i >= args.warmup:
                times[name].append(dt)
                frames[name].extend(seen)
    med = {n: statistics.median(v) for n, v in times.items()}
    out = {"model": args.backbone or f"{args.random_config} (random weights, denoiser only)", "size": list(data_size),
           "stride": args.stride, "rank": args.rank, "steps_timed": args.steps,
           "latent_frames": {n: sorted(set(v)) for n, v in frames.items()},
           "seconds_per_step": {n: round(v, 4) for n, v in med.items()},
           "ratio_full_over_sparse": round(med["full"] / med["sparse"], 3), "machine": machine_info(torch.device(args.device))}
    text = json.dumps(out, indent=2)
    print(text)
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
