"""The ``motiontune demo`` command."""

from __future__ import annotations

import argparse
from typing import Any

from motiontune.cli_shared import register_command
from motiontune.errors import ConfigError
from motiontune.toyworld.demo import DEMO_STEPS


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help="recipe to customize with (default: the best registered one)")
    p.add_argument("--steps", type=int, help=f"training steps (default {DEMO_STEPS})")
    p.add_argument("--output", help="output folder (default motiontune-demo)")
    p.add_argument("--seed", type=int)
    p.add_argument("--quiet", action="store_true")


def _run(s: dict[str, Any]) -> int:
    from motiontune.toyworld.demo import run_demo

    steps = s.pop("steps", DEMO_STEPS)
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1 (got {steps})")
    result = run_demo(output_dir=s.pop("output", "motiontune-demo"), recipe=s.pop("recipe", None), steps=steps,
                      seed=s.pop("seed", 0), progress=not s.pop("quiet", False))
    s.pop("config", None)
    if s:
        raise ConfigError(f"unknown setting(s) for demo: {', '.join(sorted(s))}")
    tuned = [r for r in result.rows if r["model"] == "customized"]
    base = [r for r in result.rows if r["model"] == "base"]
    mf = lambda rows: sum(r.get("motion_fidelity", 0.0) for r in rows) / max(1, len(rows))  # noqa: E731
    print(f"recipe {result.recipe}: motion fidelity {mf(tuned):.3f} customized vs {mf(base):.3f} base model; {result.seconds:.0f}s")
    print(f"report: {result.report}")
    return 0


register_command(
    "demo",
    "customize the embedded toy model on a held-out motion and write an HTML report",
    _add,
    _run,
    example="""example:
  motiontune demo                       # best recipe, report in motiontune-demo/report.html
  motiontune demo --recipe lora --steps 300 --output demo-lora""",
)
