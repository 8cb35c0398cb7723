"""The toy suite: a fixed, seeded list of customization scenarios in the toy world.

* Motion scenarios (one-shot): a reference clip of a HELD-OUT motion with some appearance;
  target prompts ask for that motion with a different subject (shape and colour) and a
  different background. Measured: motion fidelity to the reference, subject and background
  accuracy for the prompt, appearance leakage from the reference.
* Appearance scenarios: reference images of a subject in a HELD-OUT colour (never in base
  training); targets ask for that subject doing base motions on other backgrounds. Measured:
  subject accuracy (the held-out colour and the shape appear), motion direction, background.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from motiontune.toyworld.motions import BASE_MOTIONS, HELDOUT_MOTIONS, MotionParams
from motiontune.toyworld.world import (
    BACKGROUNDS,
    COLORS,
    HELDOUT_COLORS,
    SHAPES,
    CaptionFields,
    SceneSpec,
    caption,
)


@dataclass(frozen=True)
class ToyScenario:
    name: str
    kind: str  # "motion" or "appearance"
    references: tuple[SceneSpec, ...]
    targets: tuple[str, ...]
    #: appearance scenarios train on still frames of the references (images)
    reference_as_images: bool = False
    tags: dict = field(default_factory=dict)

    @property
    def reference_captions(self) -> tuple[str, ...]:
        return tuple(caption(s) for s in self.references)


def _reference(shape: str, color: str, background: str, motion: str) -> SceneSpec:
    return SceneSpec(shape, color, background, motion, size=0.26, anchor=(0.5, 0.5), motion_params=MotionParams())


def toy_suite_scenarios(seed: int = 0, appearances_per_motion: int = 2, targets_per_scenario: int = 3) -> list:
    """The suite as :class:`motiontune.evaluation.suites.Scenario` objects (rendered references,
    scored with the toy oracle), for ``motiontune bench --suite toy``."""
    return [to_scenario(s) for s in toy_scenarios(seed, appearances_per_motion, targets_per_scenario)]


def to_scenario(toy: ToyScenario):
    from motiontune.evaluation.suites import Scenario
    from motiontune.toyworld.render import DEFAULT_FRAMES, DEFAULT_SIZE, render

    clips = [render(s) for s in toy.references]
    common = dict(id=toy.name, prompts=list(toy.targets), group=toy.kind, scorers=("toy",),
                  size=(DEFAULT_FRAMES, DEFAULT_SIZE, DEFAULT_SIZE), metadata={"kind": toy.kind, **toy.tags})
    if toy.reference_as_images:
        return Scenario(images=[c[len(c) // 2] for c in clips], image_captions=list(toy.reference_captions), **common)
    return Scenario(videos=clips, captions=list(toy.reference_captions), **common)


def toy_scenarios(seed: int = 0, appearances_per_motion: int = 2, targets_per_scenario: int = 3) -> list[ToyScenario]:
    """The fixed suite (deterministic for a seed): 5 held-out motions x 2 appearances, plus 2
    appearance scenarios of the held-out colour."""
    rng = np.random.default_rng(seed + 9001)
    scenarios: list[ToyScenario] = []
    appearances = list(itertools.product(SHAPES, COLORS, BACKGROUNDS))
    for motion in HELDOUT_MOTIONS:
        picks = rng.choice(len(appearances), size=appearances_per_motion, replace=False)
        for k, idx in enumerate(picks):
            shape, color, bg = appearances[idx]
            targets = []
            while len(targets) < targets_per_scenario:
                t_shape = SHAPES[rng.integers(len(SHAPES))]
                t_color = COLORS[rng.integers(len(COLORS))]
                t_bg = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
                if t_shape == shape or t_color == color or t_bg == bg:
                    continue  # every target changes subject shape, colour and background
                prompt = caption(CaptionFields(t_color, t_shape, motion, t_bg))
                if prompt not in targets:
                    targets.append(prompt)
            scenarios.append(ToyScenario(f"motion-{motion}-{k}", "motion", (_reference(shape, color, bg, motion),), tuple(targets),
                                         tags={"motion": motion}))
    for k, color in enumerate(HELDOUT_COLORS * 2):
        shape = SHAPES[(k * 2 + 1) % len(SHAPES)]
        bgs = [BACKGROUNDS[(k + j) % len(BACKGROUNDS)] for j in range(3)]
        refs = tuple(_reference(shape, color, bg, "still") for bg in bgs)
        other_bgs = [b for b in BACKGROUNDS if b not in bgs]
        targets = tuple(
            caption(CaptionFields(color, shape, BASE_MOTIONS[(k + j) % 4], other_bgs[j % len(other_bgs)]))
            for j in range(targets_per_scenario)
        )
        scenarios.append(ToyScenario(f"appearance-{color}-{shape}-{k}", "appearance", refs, targets, reference_as_images=True,
                                     tags={"color": color, "shape": shape}))
    return scenarios
