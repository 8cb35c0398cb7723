"""What the toy world lends to the core's registries, all under the name ``toy``.

The core never imports the toy world. Each registry below holds a ``"motiontune.toyworld.plugin:
FUNCTION"`` string for ``toy`` and imports this module only when ``toy`` is asked for:

- :mod:`motiontune.backbones.local_models`: :func:`toy_model_path` (``--backbone toy``);
- :data:`motiontune.evaluation.suites.SUITES`: :func:`load_suite` (``--suite toy``);
- :data:`motiontune.evaluation.runner.SCORERS`: :func:`bench_scores` (``Scenario.scorers``);
- :data:`motiontune.probe.probe.SUBJECT_MATCHERS`: :func:`subject_matcher` (the probe's
  appearance score for toy-world captions);
- :data:`motiontune.recipes.prompt_roles.ROLE_READERS`: :func:`caption_roles` (subject and motion
  phrases of a toy-world caption, for recipes that split captions by role).

This module (and the toy world) may import the core; the core's import of it is always one of
these lazy lookups.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from motiontune.errors import MotiontuneError
from motiontune.toyworld.demo import toy_model_path


def load_suite(source: str | None = None) -> list:
    """The toy suite's scenarios (:class:`motiontune.evaluation.suites.Scenario`), for
    ``motiontune bench --suite toy`` (motion and appearance scenarios) or ``--suite toy:KINDS``
    (a comma list of motion, appearance, joint, fewshot, or ``all``)."""
    from motiontune.toyworld.suite import toy_suite_scenarios

    return list(toy_suite_scenarios(kinds=source))


def bench_scores(video: np.ndarray, prompt: str, reference: np.ndarray | None) -> dict[str, float]:
    """The toy oracle metrics (:func:`motiontune.toyworld.metrics.score_video`) of a uint8
    (F, H, W, 3) video, prefixed ``toy_``."""
    from motiontune.toyworld.metrics import score_video

    return {f"toy_{k}": float(v) for k, v in score_video(video, prompt, reference).items()}


def caption_roles(caption: str) -> tuple[str, str] | None:
    """(subject phrase, motion phrase) of a toy-world caption as written in it (e.g. ``("a red
    circle", "moves in a zigzag")``), or None when ``caption`` is not a toy-world caption; for
    :data:`motiontune.recipes.prompt_roles.ROLE_READERS`."""
    import re

    from motiontune.toyworld.world import MOTION_PHRASES, parse_caption

    try:
        fields = parse_caption(caption)
    except MotiontuneError:
        return None
    words = re.sub(r"\s+", " ", caption.strip().rstrip(".")).split(" ")
    phrase = MOTION_PHRASES[fields.motion]
    return " ".join(words[:3]), " ".join(words[3:3 + len(phrase.split())])


def subject_matcher(caption: str) -> Callable[[np.ndarray], float] | None:
    """For a toy-world caption, a function frames -> the fraction of the caption's subject colour
    and shape that the oracle reads in the frames (0, 0.5 or 1; NaN when no subject is found);
    None when ``caption`` is not a toy-world caption."""
    from motiontune.toyworld.metrics import subject_match
    from motiontune.toyworld.world import parse_caption

    try:
        fields = parse_caption(caption)
    except MotiontuneError:
        return None

    def match(frames: np.ndarray) -> float:
        try:
            m = subject_match(frames, fields)
        except MotiontuneError:
            return float("nan")
        return (float(m.color_match) + float(m.shape_match)) / 2

    return match


__all__ = ["bench_scores", "caption_roles", "load_suite", "subject_matcher", "toy_model_path"]
