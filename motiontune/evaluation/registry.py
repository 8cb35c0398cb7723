"""The metric registry: what each metric is, and running metrics by name.

The CLI lists :data:`METRICS` and calls :func:`compute_metrics`. A metric that needs learned
weights (CLIP, DINO, ...) is registered with ``needs_weights=True`` and names what it needs in
``weights``; while its ``function`` is ``None`` it reports ``"skipped: needs <weights>"``
instead of a number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from motiontune.errors import ConfigError, InputError
from motiontune.evaluation.metrics import (
    dynamic_degree,
    flow_similarity,
    motion_fidelity_or_reason,
    motion_smoothness,
    temporal_flickering,
)

MetricKind = Literal["video", "video+reference"]
MetricValue = float | str


@dataclass(frozen=True)
class MetricInfo:
    """One metric: how to call it and how to read its value."""

    name: str
    # video -> float for kind "video"; (video, reference) -> float for "video+reference";
    # None while a weights-based metric is not available. A function may return "n/a: REASON"
    # where the metric is undefined for these videos.
    function: Callable[..., float] | None
    kind: MetricKind
    value_range: tuple[float, float]
    higher_is_better: bool
    definition: str
    needs_weights: bool = False
    weights: str | None = None  # what a weights-based metric needs, e.g. "CLIP ViT-B/32"

    def __post_init__(self) -> None:
        if self.kind not in ("video", "video+reference"):
            raise ConfigError(f"metric {self.name!r} has unknown kind {self.kind!r}")
        if self.needs_weights and not self.weights:
            raise ConfigError(f"metric {self.name!r} needs weights but does not name them")
        if self.function is None and not self.needs_weights:
            raise ConfigError(f"metric {self.name!r} has no function")


def _dynamic_degree_score(video: np.ndarray) -> float:
    return dynamic_degree(video).score


METRICS: dict[str, MetricInfo] = {
    info.name: info
    for info in (
        MetricInfo(
            name="temporal_flickering",
            function=temporal_flickering,
            kind="video",
            value_range=(0.0, 1.0),
            higher_is_better=True,
            definition="VBench: (255 - mean absolute difference of adjacent frames) / 255.",
        ),
        MetricInfo(
            name="flow_similarity",
            function=flow_similarity,
            kind="video+reference",
            value_range=(-1.0, 1.0),
            higher_is_better=True,
            definition="Mean cosine of unit LK flow vectors on a grid, output vs reference.",
        ),
        MetricInfo(
            name="dynamic_degree",
            function=_dynamic_degree_score,
            kind="video",
            value_range=(0.0, 1.0),
            higher_is_better=True,
            definition="VBench: 1 if enough frame pairs' top-5% flow exceeds 6*min(H,W)/256.",
        ),
        MetricInfo(
            name="motion_fidelity",
            function=motion_fidelity_or_reason,
            kind="video+reference",
            value_range=(-1.0, 1.0),
            higher_is_better=True,
            definition="DMT: symmetric best-match mean cosine between LK point tracklets.",
        ),
        MetricInfo(
            name="motion_smoothness",
            function=motion_smoothness,
            kind="video",
            value_range=(0.0, 1.0),
            higher_is_better=True,
            definition="1 - mean error / 255 of odd frames interpolated along dense flow.",
        ),
    )
}


def register_metric(info: MetricInfo) -> None:
    """Add a metric to :data:`METRICS`; a name can be registered once."""
    if info.name in METRICS:
        raise ConfigError(f"metric {info.name!r} is already registered")
    METRICS[info.name] = info


def _lookup(names: Iterable[str]) -> list[MetricInfo]:
    names = list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(
            f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(sorted(METRICS))}"
        )
    return [METRICS[n] for n in names]


def compute_metrics(
    names: Iterable[str], video: np.ndarray, reference: np.ndarray | None = None
) -> dict[str, MetricValue]:
    """Run the named metrics; a number per metric, ``"skipped: needs ..."``, or ``"n/a: ..."`` with
    the reason where a metric is undefined for these videos.

    All names are checked before anything runs: unknown names raise :class:`ConfigError`, a
    reference metric without ``reference`` raises :class:`InputError`.
    """
    infos = _lookup(names)
    if reference is None:
        needing = [i.name for i in infos if i.kind == "video+reference"]
        if needing:
            raise InputError(f"metric(s) {', '.join(needing)} need a reference video")
    results: dict[str, MetricValue] = {}
    for info in infos:
        if info.function is None:
            results[info.name] = f"skipped: needs {info.weights}"
        else:
            value = info.function(video) if info.kind == "video" else info.function(video, reference)
            results[info.name] = value if isinstance(value, str) else float(value)
    return results
