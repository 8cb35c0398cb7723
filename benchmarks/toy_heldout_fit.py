"""How well ground-truth renders fit their own motion: the calibration of "held-out motion shown".

Renders ``--per-motion`` random scenes of every motion of the toy world (the jitter of speed,
size, phase and start position included), reads each with the oracle, fits the whole motion
vocabulary to its track and reports, per motion, the unexplained share of the render's own motion
(quantiles) and how often it is the best fit, and for the base motions the smallest unexplained
share of any held-out motion and how often a held-out motion is the best fit. The threshold
``HELDOUT_FIT_MAX`` of ``benchmarks/toy_quality.py``'s "held-out motion shown" should sit above
the held-out motions' worst own fit.

    python benchmarks/toy_heldout_fit.py --append-results docs/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from motiontune.toyworld.motions import BASE_MOTIONS, HELDOUT_FIT_MAX, HELDOUT_MOTIONS, MOTIONS
from motiontune.toyworld.oracle import analyze
from motiontune.toyworld.render import render
from motiontune.toyworld.training import FRAME_SIZE, NUM_FRAMES
from motiontune.toyworld.world import sample_scene

sys.path.insert(0, os.path.dirname(__file__))
from results_doc import command_line, replace_section  # noqa: E402

def measure(per_motion: int, seed: int = 0, frames: int = NUM_FRAMES, size: int = FRAME_SIZE) -> dict[str, dict]:
    """Per motion: quantiles (0.5, 0.9, 0.99, max) of the own motion's unexplained share, the share of
    renders whose best fit is their own motion, and (base motions) the smallest held-out error's 1% and
    median and the share whose best fit is a held-out motion."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {}
    for motion in MOTIONS:
        split = "heldout" if motion in HELDOUT_MOTIONS else "base"
        own, best_own, held, best_held = [], [], [], []
        for _ in range(per_motion):
            analysis = analyze(render(sample_scene(rng, split, motions=[motion]), frames, size, size))
            fit = analysis.fit_motion(MOTIONS)
            own.append(fit.errors[motion])
            best_own.append(fit.motion == motion)
            held.append(min(fit.errors[m] for m in HELDOUT_MOTIONS))
            best_held.append(fit.motion in HELDOUT_MOTIONS)
        out[motion] = {
            "own_error_quantiles": [float(q) for q in np.quantile(own, [0.5, 0.9, 0.99, 1.0])],
            "best_is_own": float(np.mean(best_own)),
            "heldout_error_low": [float(q) for q in np.quantile(held, [0.01, 0.5])],
            "best_is_heldout": float(np.mean(best_held)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-motion", type=int, default=100, help="renders per motion (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-json", default=None)
    p.add_argument("--append-results", default=None, help="write the table into this Markdown file")
    args = p.parse_args(argv)
    if args.per_motion < 1:
        p.error(f"--per-motion {args.per_motion}: must be 1 or more")
    t0 = time.time()
    result = measure(args.per_motion, args.seed)
    worst = max(result[m]["own_error_quantiles"][-1] for m in HELDOUT_MOTIONS)
    print(json.dumps({"per_motion": args.per_motion, "worst_heldout_own_error": worst, "threshold": HELDOUT_FIT_MAX,
                      "motions": result}, indent=1))
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            json.dump({"per_motion": args.per_motion, "seed": args.seed, "motions": result}, fh, indent=1)
    if args.append_results:
        rows = []
        for m in MOTIONS:
            r = result[m]
            q = " / ".join(f"{v:.3f}" for v in r["own_error_quantiles"])
            held = "" if m in HELDOUT_MOTIONS else f"{r['heldout_error_low'][0]:.3f} / {r['heldout_error_low'][1]:.3f}"
            best_held = "" if m in HELDOUT_MOTIONS else f"{r['best_is_heldout']:.2f}"
            rows.append(f"| {m} | {'held-out' if m in HELDOUT_MOTIONS else 'base'} | {q} | {r['best_is_own']:.2f} | {held} | {best_held} |")
        body = (
            f"Command: `{command_line(__file__, argv).strip()}` — {time.strftime('%Y-%m-%d')}, {time.time() - t0:.0f} s.\n\n"
            f"{args.per_motion} ground-truth renders per motion ({NUM_FRAMES} frames of {FRAME_SIZE}x{FRAME_SIZE}, random subject, "
            "background, speed, size, phase and start), read by the oracle; the whole vocabulary is fitted to each "
            "track. \"Still\" is chosen by the track's spread and has no fit error (1.0).\n\n"
            "| motion | split | own motion unexplained: median / 90% / 99% / max | best fit is own | "
            "best held-out unexplained: 1% / median | best fit is held-out |\n|---|---|---|---|---|---|\n"
            + "\n".join(rows)
            + f"\n\nThe held-out motions' renders leave at most {worst:.3f} of their track unexplained by their own "
            f"motion; `toy_quality.py` counts a held-out motion as shown in a generated clip when it is the best fit "
            f"and leaves at most {HELDOUT_FIT_MAX:g} (`HELDOUT_FIT_MAX`).\n"
        )
        replace_section(args.append_results, "## Toy oracle: how well renders fit their motion", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
