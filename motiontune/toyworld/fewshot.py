"""Few-shot motion scenarios in the toy world, shaped like SynMotion's evaluation.

Each scenario holds 3 or 4 reference clips of one HELD-OUT motion, each with its own subject
colour, subject shape and background; its target prompts ask for that motion with
subjects (colour-shape pairs) and backgrounds that no reference shows. One scenario per held-out
motion (5), fixed for a seed. The toy world has 5 backgrounds, so at most 4 references leave a
background for the targets.

Measured with the toy oracle like every toy scenario (``toy_*`` scores of ``motiontune bench``):
``motion_accuracy`` (the oracle's best-fitting motion is the asked one, the analogue of the
paper's yes/no motion accuracy), ``subject_accuracy``, ``background_accuracy``,
``motion_fidelity`` and ``appearance_leakage`` (against the first reference clip).
"""

from __future__ import annotations

import numpy as np

from motiontune.errors import ConfigError
from motiontune.toyworld.motions import HELDOUT_MOTIONS, MotionParams
from motiontune.toyworld.suite import ToyScenario, to_scenario
from motiontune.toyworld.world import BACKGROUNDS, COLORS, SHAPES, CaptionFields, SceneSpec, caption

KIND = "fewshot"


def _reference(shape: str, color: str, background: str, motion: str, rng: np.random.Generator) -> SceneSpec:
    """A reference clip with some jitter of the motion (the references of one motion differ in more
    than appearance, as real example videos do)."""
    params = MotionParams(amplitude=float(rng.uniform(0.85, 1.15)), speed=1.0, phase=float(rng.uniform(0.0, 1.0)),
                          sense=int(rng.choice([1, -1])))
    return SceneSpec(shape, color, background, motion, size=0.26, anchor=(0.5, 0.5), motion_params=params)


def fewshot_scenarios(seed: int = 0, references: int = 3, targets_per_scenario: int = 3,
                      motions: tuple[str, ...] = HELDOUT_MOTIONS) -> list[ToyScenario]:
    """One few-shot scenario per held-out motion (deterministic for a seed)."""
    if not 3 <= int(references) <= len(BACKGROUNDS) - 1:
        raise ConfigError(f"few-shot scenarios take 3 to {len(BACKGROUNDS) - 1} references (each on its own background, "
                          f"leaving one for the targets); got {references}")
    if int(targets_per_scenario) < 1:
        raise ConfigError(f"targets_per_scenario must be >= 1 (got {targets_per_scenario})")
    unknown = [m for m in motions if m not in HELDOUT_MOTIONS]
    if unknown:
        raise ConfigError(f"few-shot scenarios use held-out motions ({', '.join(HELDOUT_MOTIONS)}); got {unknown}")
    rng = np.random.default_rng(seed + 31_001)
    out: list[ToyScenario] = []
    for motion in motions:
        bgs = [BACKGROUNDS[i] for i in rng.permutation(len(BACKGROUNDS))]
        ref_bgs, free_bgs = bgs[:references], bgs[references:]
        # every reference its own colour and its own shape
        ref_colors = [COLORS[i] for i in rng.choice(len(COLORS), size=references, replace=False)]
        ref_shapes = [SHAPES[i] for i in rng.choice(len(SHAPES), size=references, replace=False)]
        ref_subjects = list(zip(ref_colors, ref_shapes))
        refs = tuple(_reference(shape, color, bg, motion, rng) for (color, shape), bg in zip(ref_subjects, ref_bgs))
        # targets: a colour and a shape that no reference has, on a background no reference has
        colors = [c for c in COLORS if c not in {c for c, _ in ref_subjects}]
        shapes = [s for s in SHAPES if s not in {s for _, s in ref_subjects}] or [s for s in SHAPES]
        pool = [(c, s, b) for c in colors for s in shapes for b in free_bgs]
        order = rng.permutation(len(pool))
        targets = []
        for i in order:
            c, s, b = pool[i]
            prompt = caption(CaptionFields(c, s, motion, b))
            if prompt not in targets:
                targets.append(prompt)
            if len(targets) == targets_per_scenario:
                break
        out.append(ToyScenario(f"fewshot-{motion}", KIND, refs, tuple(targets),
                               tags={"motion": motion, "references": references}))
    return out


def fewshot_suite_scenarios(seed: int = 0, references: int = 3, targets_per_scenario: int = 3) -> list:
    """The few-shot scenarios as :class:`motiontune.evaluation.suites.Scenario` objects (rendered
    references, scored by the toy oracle), for ``motiontune bench``."""
    return [to_scenario(s) for s in fewshot_scenarios(seed, references, targets_per_scenario)]


__all__ = ["KIND", "fewshot_scenarios", "fewshot_suite_scenarios"]
