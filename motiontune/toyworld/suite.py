"""The toy suite: a fixed, seeded list of customization scenarios in the toy world.

* Motion scenarios (one-shot): a reference clip of a HELD-OUT motion with some appearance;
  target prompts ask for that motion with a different subject (shape and colour) and a
  different background. Measured: motion fidelity to the reference, subject and background
  accuracy for the prompt, appearance leakage from the reference.
* Appearance scenarios: reference images of a subject in a HELD-OUT colour (never in base
  training); targets ask for that subject doing base motions on other backgrounds. Measured:
  subject accuracy (the held-out colour and the shape appear), motion direction, background.
* Joint scenarios (the JointTuner / DualReal evaluation): reference images of a subject in the
  held-out colour on two backgrounds, and a reference clip of a held-out motion performed by
  another subject (another colour and shape) on a third background; targets ask for the custom
  subject doing the custom motion on the two remaining backgrounds. Measured: subject accuracy
  (held-out colour and shape), motion fidelity to the clip, leakage of the clip's subject and
  background, background accuracy, motion accuracy.

Kinds are picked with ``--suite toy:KINDS`` (comma list of motion, appearance, joint, or
``all``); ``--suite toy`` is the motion and appearance scenarios.
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
    kind: str  # "motion", "appearance" or "joint" (or a kind added elsewhere, e.g. "fewshot")
    references: tuple[SceneSpec, ...]
    targets: tuple[str, ...]
    #: appearance scenarios train on still frames of the references (images)
    reference_as_images: bool = False
    tags: dict = field(default_factory=dict)
    #: subject images given beside the reference clip(s) (joint scenarios): still frames of these
    image_references: tuple[SceneSpec, ...] = ()

    @property
    def reference_captions(self) -> tuple[str, ...]:
        return tuple(caption(s) for s in self.references)


def _reference(shape: str, color: str, background: str, motion: str) -> SceneSpec:
    return SceneSpec(shape, color, background, motion, size=0.26, anchor=(0.5, 0.5), motion_params=MotionParams())


#: the scenario kinds of ``--suite toy`` without a kind list
DEFAULT_KINDS: tuple[str, ...] = ("motion", "appearance")
#: every kind, in suite order (``--suite toy:all``)
ALL_KINDS: tuple[str, ...] = ("motion", "appearance", "joint", "fewshot")


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """``"joint"``, ``"motion,appearance"``, ``"all"`` or None (the default kinds) as a tuple."""
    from motiontune.errors import ConfigError

    if text is None or not str(text).strip():
        return DEFAULT_KINDS
    kinds = [k.strip() for k in str(text).split(",") if k.strip()]
    if kinds == ["all"]:
        return ALL_KINDS
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown:
        raise ConfigError(f"unknown toy scenario kind(s) {', '.join(unknown)}; choose from {', '.join(ALL_KINDS)} or all")
    if len(set(kinds)) != len(kinds):
        raise ConfigError(f"toy scenario kinds listed twice: {text}")
    return tuple(k for k in ALL_KINDS if k in kinds)


def kind_scenarios(kind: str, seed: int = 0) -> list[ToyScenario]:
    """The fixed scenarios of one kind."""
    if kind in ("motion", "appearance"):
        return [s for s in toy_scenarios(seed) if s.kind == kind]
    if kind == "joint":
        return joint_scenarios(seed)
    if kind == "fewshot":
        from motiontune.toyworld.fewshot import fewshot_scenarios

        return fewshot_scenarios(seed)
    raise ValueError(kind)


def toy_suite_scenarios(seed: int = 0, kinds: str | tuple[str, ...] | None = None) -> list:
    """The suite as :class:`motiontune.evaluation.suites.Scenario` objects (rendered references,
    scored with the toy oracle), for ``motiontune bench --suite toy[:KINDS]``."""
    kinds = parse_kinds(kinds) if kinds is None or isinstance(kinds, str) else parse_kinds(",".join(kinds))
    return [to_scenario(s) for kind in kinds for s in kind_scenarios(kind, seed)]


def to_scenario(toy: ToyScenario):
    from motiontune.evaluation.suites import Scenario
    from motiontune.toyworld.render import DEFAULT_FRAMES, DEFAULT_SIZE, render

    clips = [render(s) for s in toy.references]
    common = dict(id=toy.name, prompts=list(toy.targets), group=toy.kind, scorers=("toy",),
                  size=(DEFAULT_FRAMES, DEFAULT_SIZE, DEFAULT_SIZE), metadata={"kind": toy.kind, **toy.tags})
    if toy.reference_as_images:
        return Scenario(images=[c[len(c) // 2] for c in clips], image_captions=list(toy.reference_captions), **common)
    if toy.image_references:
        stills = [render(s) for s in toy.image_references]
        common.update(images=[c[len(c) // 2] for c in stills], image_captions=[caption(s) for s in toy.image_references])
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


def joint_scenarios(seed: int = 0, count: int = 6) -> list[ToyScenario]:
    """The joint scenarios (deterministic for a seed): scenario k customizes a subject of the
    held-out colour (shape cycling over the shapes) from still images on two backgrounds, and a
    held-out motion (cycling over the held-out motions) from one clip of a different subject
    (another base colour and shape) on a third background. Targets: the custom subject doing the
    custom motion on the two remaining backgrounds, neither of them a reference background."""
    rng = np.random.default_rng(seed + 9101)
    scenarios: list[ToyScenario] = []
    for k in range(count):
        motion = HELDOUT_MOTIONS[k % len(HELDOUT_MOTIONS)]
        color = HELDOUT_COLORS[k % len(HELDOUT_COLORS)]
        shape = SHAPES[k % len(SHAPES)]
        bgs = [BACKGROUNDS[i] for i in rng.permutation(len(BACKGROUNDS))]
        image_bgs, clip_bg, target_bgs = bgs[:2], bgs[2], bgs[3:]
        clip_shape = [s for s in SHAPES if s != shape][int(rng.integers(len(SHAPES) - 1))]
        clip_color = COLORS[int(rng.integers(len(COLORS)))]
        images = tuple(_reference(shape, color, bg, "still") for bg in image_bgs)
        clip = _reference(clip_shape, clip_color, clip_bg, motion)
        targets = tuple(caption(CaptionFields(color, shape, motion, bg)) for bg in target_bgs)
        scenarios.append(ToyScenario(f"joint-{motion}-{color}-{shape}-{k}", "joint", (clip,), targets, image_references=images,
                                     tags={"motion": motion, "color": color, "shape": shape}))
    return scenarios
