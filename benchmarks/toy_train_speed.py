"""Seconds per step of the toy model's transformer training, eager and compiled.

Times ``Trainer.train_step`` as the toy training's dit and tune stages run it: the ``full`` recipe on
the toy model's transformer, batch 16, AdamW with gradient clipping, per-sample loss weights and
half of the samples with their own noisy-input latents (as the swapped-shape inputs). The latents
are random tensors of the toy VAE's shape (the step's cost does not depend on their values), with
captions of the toy world. Each (mode, latent frames) pair gets a freshly loaded model, untimed
warm-up steps (where compilation happens), then timed steps; the median and mean are reported.
9 latent frames are a full-length clip (17 frames), 3 the short batches (``dit_short_frames``).

    python benchmarks/toy_train_speed.py --threads 2 --append-results docs/RESULTS.md
    python benchmarks/toy_train_speed.py --modes eager --latent-frames 9 --steps 5
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

import torch

from motiontune.backbones import load_backbone
from motiontune.data.dataset import TrainingData
from motiontune.errors import ConfigError
from motiontune.recipes import make_recipe
from motiontune.toyworld.demo import toy_model_path
from motiontune.toyworld.motions import BASE_MOTIONS
from motiontune.toyworld.training import BankSample, LatentBank
from motiontune.toyworld.world import BACKGROUNDS, COLORS, SHAPES, CaptionFields, caption
from motiontune.training.trainer import Trainer, TrainConfig

sys.path.insert(0, os.path.dirname(__file__))
from results_doc import command_line, upsert_row  # noqa: E402

HEADING = "## Toy training speed"
INTRO = """Seconds per step of the toy transformer's training step (`Trainer.train_step`: `full` recipe,
batch 16, loss weights, half the samples with their own noisy-input latents), eager and with
`TrainConfig.compile` (`--compile` of `python -m motiontune.toyworld.training`), by
`benchmarks/toy_train_speed.py` (the command is in each row's last cell). 9 latent frames are a
full-length clip, 3 a short batch. "first step s" includes compilation when compiled; it is short
when torch's compile cache already holds the graphs (a cold first compile took about 2 minutes).
These CPUs are shared: the same step has measured 1.6 to 2.5 s on different days, so compare rows
of one date."""
HEADER = ["mode / latent frames / date", "batch", "threads", "median s/step", "mean s/step", "steps timed", "first step s", "command"]


def samples(latent_frames: int, n: int, z_dim: int, height: int, width: int, seed: int) -> TrainingData:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        fields = CaptionFields(COLORS[i % len(COLORS)], SHAPES[i % len(SHAPES)], BASE_MOTIONS[i % len(BASE_MOTIONS)],
                               BACKGROUNDS[i % len(BACKGROUNDS)])
        latents = torch.randn(z_dim, latent_frames, height, width, generator=g)
        weight = 1.0 + 3.0 * (torch.rand(1, latent_frames, height, width, generator=g) < 0.1).float()
        swapped = torch.randn(latents.shape, generator=g) if i % 2 else None
        out.append(BankSample(None, caption(fields), "video", f"random-{i}", latents=latents, loss_weight=weight,
                              input_latents=swapped, input_levels=(0.3, 1.0)))
    return BankData(out)


class BankData(TrainingData):
    """Fixed samples that make their noisy inputs the way the toy bank does (swapped inputs)."""

    training_input = staticmethod(LatentBank.training_input)


def measure(model: str, mode: str, latent_frames: int, args) -> dict:
    spec = load_backbone(model, family="wan", device="cpu")
    _, channels, _, height, width = spec.latent_shape(*spec.default_size)  # the model's own frame size
    data = samples(latent_frames, 64, channels, height, width, args.seed)
    recipe = make_recipe("full", attention=("all",), learning_rate=5e-4)
    with tempfile.TemporaryDirectory() as out:
        tc = TrainConfig(output_dir=out, steps=args.warmup + args.steps, batch_size=args.batch, seed=args.seed,
                         timestep_distribution="uniform", train_shift=2.0, checkpoint_every=0, progress=False,
                         max_grad_norm=1.0, compile=mode == "compiled")
        trainer = Trainer(spec, recipe, data, tc)
        times = []
        for step in range(args.warmup + args.steps):
            began = time.perf_counter()
            trainer.train_step(step)
            times.append(time.perf_counter() - began)
            if not args.quiet:
                print(f"{mode} / {latent_frames} frames: step {step + 1} {times[-1]:.2f}s", file=sys.stderr)
    timed = times[args.warmup:]
    return {"mode": mode, "latent_frames": latent_frames, "batch": args.batch, "median": statistics.median(timed),
            "mean": statistics.fmean(timed), "steps": len(timed), "first": times[0], "times": times}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="toy model folder (default: the packaged one)")
    parser.add_argument("--modes", default="eager,compiled", help="comma-separated: eager, compiled")
    parser.add_argument("--latent-frames", default="9,3", help="comma-separated latent frame counts")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--output-json", metavar="PATH")
    parser.add_argument("--append-results", metavar="PATH", help="write the rows to this document's 'Toy training speed' table")
    args = parser.parse_args(argv)
    try:
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        if not modes or set(modes) - {"eager", "compiled"}:
            raise ConfigError(f"--modes {args.modes!r}: expected eager and/or compiled")
        try:
            frames = [int(f) for f in args.latent_frames.split(",")]
        except ValueError:
            raise ConfigError(f"--latent-frames {args.latent_frames!r}: expected integers") from None
        if not frames or min(frames) < 1:
            raise ConfigError(f"--latent-frames {args.latent_frames!r}: expected counts of 1 or more")
        if args.steps < 1 or args.warmup < 1 or args.batch < 1:
            raise ConfigError("--steps, --warmup and --batch must be 1 or more (the first step is always untimed)")
        model = args.model or toy_model_path()
        if not os.path.isfile(os.path.join(model, "model_index.json")):
            raise ConfigError(f"--model {model}: no model_index.json there")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [measure(model, mode, f, args) for mode in modes for f in frames]
    date = time.strftime("%Y-%m-%d", time.gmtime())
    cmd = command_line(__file__, argv)
    for r in results:
        print(f"{r['mode']:9s} {r['latent_frames']} latent frames: median {r['median']:.3f} s/step, mean {r['mean']:.3f} "
              f"({r['steps']} steps; first step {r['first']:.1f} s)")
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            json.dump({"command": cmd, "date": date, "threads": torch.get_num_threads(), "machine": platform.platform(),
                       "torch": torch.__version__, "results": results}, fh, indent=1)
    if args.append_results:
        for r in results:
            upsert_row(args.append_results, HEADING, INTRO, HEADER, [
                f"{r['mode']} / {r['latent_frames']} / {date}", str(r["batch"]), str(torch.get_num_threads()),
                f"{r['median']:.3f}", f"{r['mean']:.3f}", str(r["steps"]), f"{r['first']:.1f}", f"`{cmd}`"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
