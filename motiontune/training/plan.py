"""Stages and passes: how a recipe lays out its training.

A run is a sequence of :class:`Stage` objects (one by default), each with its own number of
steps, the branches it trains, its data pool, frame sampling, learning rate, weight decay and
optimizer. Every step of a stage runs one or more :class:`Pass` objects (one by default): a
forward pass on a batch from one data pool, with chosen adapter scales, whose loss trains the
branches the pass names. Branches a step does not train still run in the forward pass and are
left exactly as they were: their parameters get no gradient and their optimizers do not step
(no momentum, no weight decay).

Passes are chosen by :meth:`Recipe.passes` from a generator seeded by the run's seed and the step
alone, so every process of a data-parallel run trains the same branches on the same step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from motiontune.errors import ConfigError

#: data pools every training set offers; a recipe may add its own (:meth:`Recipe.pools`)
BUILTIN_POOLS = ("video", "image", "frame")
OPTIMIZERS = ("adamw", "adam", "sgd", "adamw8bit")


@dataclass(frozen=True)
class Pass:
    """One forward/backward pass of a step."""

    #: data pool: "video" (whole clips), "frame" (single random frames of the clips), "image"
    #: (reference images; single frames of the clips when there are none), or a recipe's own
    pool: str = "video"
    #: branches this pass's loss trains (None: every branch the stage trains)
    train: tuple[str, ...] | None = None
    #: adapter scales during this pass (adapters not named keep scale 1)
    scales: Mapping[str, float] = field(default_factory=dict)
    #: a label the recipe's loss sees (``LossContext.pass_name``) and the logs use
    name: str = ""
    #: probability of a horizontal flip of each drawn sample (None: the stage's)
    flip: float | None = None


@dataclass(frozen=True)
class Stage:
    """A run segment with its own steps, trainable set, data and optimizer settings."""

    name: str = "train"
    #: optimizer steps of this stage (None: what is left of the run's steps; only the last stage)
    steps: int | None = None
    #: branches trained in this stage (None: all of the recipe's branches)
    train: tuple[str, ...] | None = None
    #: the data pool of its default pass
    pool: str = "video"
    #: probability of a horizontal flip of each drawn clip, frame or image
    flip: float = 0.0
    #: take every ``frame_stride``-th frame of each clip (from a random offset); the frame indices
    #: reach the recipe's forward context (``DenoiserCall.frame_indices``)
    frame_stride: int = 1
    #: learning rate and weight decay of the branches it trains (None: each branch's own)
    learning_rate: float | None = None
    weight_decay: float | None = None
    optimizer: str = "adamw"

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("a stage needs a name")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise ConfigError(f"stage {self.name!r}: steps must be a whole number >= 1 (got {self.steps!r})")
        if not 0.0 <= float(self.flip) <= 1.0:
            raise ConfigError(f"stage {self.name!r}: flip must lie in [0, 1] (got {self.flip})")
        if isinstance(self.frame_stride, bool) or not isinstance(self.frame_stride, int) or self.frame_stride < 1:
            raise ConfigError(f"stage {self.name!r}: frame_stride must be a whole number >= 1 (got {self.frame_stride!r})")
        if self.learning_rate is not None and not float(self.learning_rate) > 0:
            raise ConfigError(f"stage {self.name!r}: learning_rate must be > 0 (got {self.learning_rate})")
        if self.weight_decay is not None and not float(self.weight_decay) >= 0:
            raise ConfigError(f"stage {self.name!r}: weight_decay must be >= 0 (got {self.weight_decay})")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"stage {self.name!r}: optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")


@dataclass(frozen=True)
class StageSpan:
    """A stage placed on the run's step axis: steps ``start`` (inclusive) to ``end`` (exclusive)."""

    stage: Stage
    start: int
    end: int
    index: int


def layout_stages(stages: list[Stage], total_steps: int, branches: list[str], pools: list[str]) -> list[StageSpan]:
    """Place ``stages`` on ``total_steps`` steps and check them against the recipe's branches and pools.

    A stage without ``steps`` takes what is left (only the last one may). Raises ConfigError naming
    the problem: an unknown branch or pool, a stage with no steps left, a step count that does not
    add up to the run's steps.
    """
    if not stages:
        raise ConfigError("a recipe must declare at least one stage")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"stage names must be unique (got {', '.join(names)})")
    spans: list[StageSpan] = []
    start = 0
    for i, stage in enumerate(stages):
        for b in stage.train or ():
            if b not in branches:
                raise ConfigError(f"stage {stage.name!r} trains {b!r}, which is not a branch of this recipe (branches: {', '.join(branches)})")
        if stage.pool not in pools:
            raise ConfigError(f"stage {stage.name!r}: unknown data pool {stage.pool!r} (pools: {', '.join(pools)})")
        if stage.steps is None:
            if i != len(stages) - 1:
                raise ConfigError(f"stage {stage.name!r} has no step count; only the last stage may take the remaining steps")
            steps = total_steps - start
            if steps < 1:
                raise ConfigError(f"stage {stage.name!r} is left with {steps} steps: the run's steps ({total_steps}) "
                                  f"are used up by the stages before it")
        else:
            steps = stage.steps
        spans.append(StageSpan(stage, start, start + steps, i))
        start += steps
    if start != total_steps:
        raise ConfigError(f"the stages add up to {start} steps but the run has steps={total_steps}: "
                          f"set steps to {start} or change the stages' steps")
    return spans


def stage_at(spans: list[StageSpan], step: int) -> StageSpan:
    for span in spans:
        if span.start <= step < span.end:
            return span
    raise ConfigError(f"step {step} lies outside every stage")


def check_pass(p: Pass, span: StageSpan, branches: list[str], pools: list[str], adapters: list[str]) -> None:
    if p.pool not in pools:
        raise ConfigError(f"pass {p.name or p.pool!r}: unknown data pool {p.pool!r} (pools: {', '.join(pools)})")
    for b in p.train or ():
        if b not in branches:
            raise ConfigError(f"pass {p.name or p.pool!r} trains {b!r}, which is not a branch (branches: {', '.join(branches)})")
        if span.stage.train is not None and b not in span.stage.train:
            raise ConfigError(f"pass {p.name or p.pool!r} trains {b!r}, which stage {span.stage.name!r} does not train")
    for a in p.scales:
        if a not in adapters:
            raise ConfigError(f"pass {p.name or p.pool!r} scales {a!r}, which is not an adapter (adapters: {', '.join(adapters) or 'none'})")


def stage_summary(spans: list[StageSpan]) -> list[dict[str, Any]]:
    return [{"name": s.stage.name, "steps": s.end - s.start, "from_step": s.start, "train": list(s.stage.train or []),
             "pool": s.stage.pool} for s in spans]
