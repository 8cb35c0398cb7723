"""Vocabulary, palettes, scene specification, captions and scene sampling of the toy world.

A scene shows one subject (a shape in a colour) moving over a background. Names are split
into what a base model is trained on and what is held out for customization:

* motions: :data:`BASE_MOTIONS` and :data:`HELDOUT_MOTIONS` (see :mod:`.motions`);
* subject colours: :data:`COLORS` and :data:`HELDOUT_COLORS`;
* shapes: :data:`SHAPES`; backgrounds: :data:`BACKGROUNDS`.

Captions are deterministic English sentences such as
``"a red circle moves left on a black background"``; :func:`parse_caption` inverts them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from motiontune.errors import ConfigError
from motiontune.toyworld.motions import (
    BASE_MOTIONS,
    HELDOUT_MOTIONS,
    MOTIONS,
    MotionParams,
    check_motion,
    motion_extent,
)

RGB = tuple[int, int, int]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "orange", "purple", "white", "cyan")
HELDOUT_COLORS: tuple[str, ...] = ("pink",)
ALL_COLORS: tuple[str, ...] = COLORS + HELDOUT_COLORS
BACKGROUNDS: tuple[str, ...] = ("black", "gray", "navy", "brown", "checkered")

COLOR_RGB: Mapping[str, RGB] = MappingProxyType(
    {
        "red": (230, 40, 40),
        "green": (40, 200, 60),
        "blue": (40, 90, 255),
        "yellow": (245, 225, 40),
        "orange": (255, 140, 20),
        "purple": (160, 60, 220),
        "white": (245, 245, 245),
        "cyan": (40, 220, 230),
        "pink": (255, 120, 200),
    }
)
# One colour for a flat background, two for a checkerboard.
BACKGROUND_RGB: Mapping[str, tuple[RGB, ...]] = MappingProxyType(
    {
        "black": ((0, 0, 0),),
        "gray": ((128, 128, 128),),
        "navy": ((20, 25, 95),),
        "brown": ((100, 65, 35),),
        "checkered": ((45, 45, 45), (85, 85, 85)),
    }
)
# Checkerboard cells per frame side.
CHECKER_CELLS = 8

# Which motions and colours each split draws from.
SPLITS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType(
    {
        "base": (BASE_MOTIONS, COLORS),
        "heldout_motion": (HELDOUT_MOTIONS, COLORS),
        "heldout_color": (BASE_MOTIONS, HELDOUT_COLORS),
        "heldout": (HELDOUT_MOTIONS, HELDOUT_COLORS),
        "all": (MOTIONS, ALL_COLORS),
    }
)

MOTION_PHRASES: Mapping[str, str] = MappingProxyType(
    {
        "left": "moves left",
        "right": "moves right",
        "up": "moves up",
        "down": "moves down",
        "still": "stays still",
        "grow": "grows",
        "shrink": "shrinks",
        "orbit": "orbits",
        "zigzag": "moves in a zigzag",
        "bounce": "bounces",
        "figure_eight": "moves in a figure-eight",
        "spiral": "spirals",
    }
)

# Shape area as a multiple of width**2 (width = width of the shape's bounding box).
SHAPE_AREA: Mapping[str, float] = MappingProxyType(
    {"circle": float(np.pi / 4), "square": 1.0, "triangle": 0.5, "diamond": 0.5}
)
# Bounding-box width of each shape per unit of subject size. The subject size is the diameter
# of the circle with the same area, so all shapes of one size cover the same area.
SHAPE_WIDTH: Mapping[str, float] = MappingProxyType(
    {name: float(np.sqrt(SHAPE_AREA["circle"] / area)) for name, area in SHAPE_AREA.items()}
)
# Extent of each shape around its centre (area centroid) per unit of subject size:
# (left, right, top, bottom). A triangle points up, so it reaches 2/3 of its height above its
# centroid.
SHAPE_EXTENT: Mapping[str, tuple[float, float, float, float]] = MappingProxyType(
    {
        name: tuple(SHAPE_WIDTH[name] * e for e in ((0.5, 0.5, 2 / 3, 1 / 3) if name == "triangle" else (0.5,) * 4))
        for name in SHAPE_AREA
    }
)

SIZE_RANGE = (0.22, 0.30)
AMPLITUDE_RANGE = (0.8, 1.2)
SPEED_RANGE = (0.85, 1.15)
FRAME_MARGIN = 0.03


def _check_name(kind: str, name: str, known: Sequence[str]) -> str:
    if name not in known:
        raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(known)}")
    return name


@dataclass(frozen=True)
class CaptionFields:
    """What a caption says: subject colour and shape, motion and background."""

    color: str
    shape: str
    motion: str
    background: str

    def __post_init__(self) -> None:
        _check_name("colour", self.color, ALL_COLORS)
        _check_name("shape", self.shape, SHAPES)
        check_motion(self.motion)
        _check_name("background", self.background, BACKGROUNDS)

    @property
    def caption(self) -> str:
        return caption(self)


@dataclass(frozen=True)
class SceneSpec:
    """A complete description of one toy-world clip; rendering it is deterministic.

    size: diameter of the circle with the subject's area, as a fraction of min(height, width),
        at the middle of the clip for size-changing motions (see SHAPE_WIDTH).
    anchor: normalised (x, y) point the motion is relative to: the middle of the path for
        linear motions, the centre of rotation for orbit and spiral, the centre of the pattern
        for the other motions.
    seed: the seed the scene was sampled with, if any (provenance only).
    """

    shape: str
    color: str
    background: str
    motion: str
    size: float = 0.26
    anchor: tuple[float, float] = (0.5, 0.5)
    motion_params: MotionParams = field(default_factory=MotionParams)
    seed: int | None = None

    def __post_init__(self) -> None:
        CaptionFields(self.color, self.shape, self.motion, self.background)
        if not 0.0 < self.size <= 1.0:
            raise ConfigError(f"subject size must be in (0, 1], got {self.size}")
        if len(self.anchor) != 2 or not all(-1.0 <= a <= 2.0 for a in self.anchor):
            raise ConfigError(f"anchor must be two normalised coordinates, got {self.anchor}")
        object.__setattr__(self, "anchor", (float(self.anchor[0]), float(self.anchor[1])))

    @property
    def fields(self) -> CaptionFields:
        return CaptionFields(self.color, self.shape, self.motion, self.background)

    @property
    def caption(self) -> str:
        return caption(self.fields)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SceneSpec":
        values = dict(data)
        params = values.pop("motion_params", {}) or {}
        try:
            return cls(motion_params=MotionParams(**params), **values)
        except TypeError as exc:
            raise ConfigError(f"invalid scene description: {exc}") from None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(fields: CaptionFields | SceneSpec) -> str:
    """The English caption of a scene, e.g. ``"a red circle moves left on a black background"``."""
    f = fields.fields if isinstance(fields, SceneSpec) else fields
    return (
        f"{_article(f.color)} {f.color} {f.shape} {MOTION_PHRASES[f.motion]} "
        f"on {_article(f.background)} {f.background} background"
    )


_PHRASE_TO_MOTION = {phrase: motion for motion, phrase in MOTION_PHRASES.items()}


def parse_caption(text: str) -> CaptionFields:
    """Inverse of :func:`caption`; raises ConfigError naming the part it cannot read."""
    if not isinstance(text, str):
        raise ConfigError(f"caption must be a string, got {type(text).__name__}")
    words = re.sub(r"\s+", " ", text.strip().lower().rstrip(".")).split(" ")
    shown = text if len(text) <= 80 else text[:77] + "..."
    if len(words) < 7 or words[0] not in ("a", "an"):
        raise ConfigError(
            f"cannot parse caption {shown!r}: expected 'a <colour> <shape> <motion> on a <background> background'"
        )
    if words[-1] != "background" or words[-4] != "on" or words[-3] not in ("a", "an"):
        raise ConfigError(f"cannot parse caption {shown!r}: it must end with 'on a <background> background'")
    color, shape, background = words[1], words[2], words[-2]
    phrase = " ".join(words[3:-4])
    if color not in ALL_COLORS:
        raise ConfigError(f"unknown colour {color!r} in caption {shown!r}")
    if shape not in SHAPES:
        raise ConfigError(f"unknown shape {shape!r} in caption {shown!r}")
    if phrase not in _PHRASE_TO_MOTION:
        raise ConfigError(f"unknown motion {phrase!r} in caption {shown!r}")
    if background not in BACKGROUNDS:
        raise ConfigError(f"unknown background {background!r} in caption {shown!r}")
    return CaptionFields(color, shape, _PHRASE_TO_MOTION[phrase], background)


def _vocabulary() -> tuple[str, ...]:
    words: set[str] = {"a", "an", "on", "background"}
    for group in (ALL_COLORS, SHAPES, BACKGROUNDS, MOTION_PHRASES.values()):
        for item in group:
            words.update(item.split(" "))
    return tuple(sorted(words))


VOCABULARY: tuple[str, ...] = _vocabulary()


def as_fields(prompt: str | CaptionFields | SceneSpec) -> CaptionFields:
    """Caption fields of a caption string, a CaptionFields or a SceneSpec."""
    if isinstance(prompt, CaptionFields):
        return prompt
    if isinstance(prompt, SceneSpec):
        return prompt.fields
    return parse_caption(prompt)


def _choices(kind: str, requested: Iterable[str] | None, allowed: Sequence[str], split: str) -> tuple[str, ...]:
    if requested is None:
        return tuple(allowed)
    chosen = tuple(requested)
    if not chosen:
        raise ConfigError(f"empty list of {kind}s")
    for name in chosen:
        if name not in allowed:
            raise ConfigError(f"{kind} {name!r} is not part of split {split!r} ({', '.join(allowed)})")
    return chosen


def _as_rng(rng: np.random.Generator | int | None) -> tuple[np.random.Generator, int | None]:
    if isinstance(rng, np.random.Generator):
        return rng, None
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng), None if rng is None else int(rng)
    raise ConfigError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def _anchor_range(lo_off: float, hi_off: float, before: float, after: float) -> tuple[float, float]:
    """Anchor interval keeping [anchor + lo_off - before, anchor + hi_off + after] in frame."""
    return FRAME_MARGIN + before - lo_off, 1.0 - FRAME_MARGIN - after - hi_off


def sample_scene(
    rng: np.random.Generator | int | None = None,
    split: str = "base",
    motions: Iterable[str] | None = None,
    colors: Iterable[str] | None = None,
    shapes: Iterable[str] | None = None,
    backgrounds: Iterable[str] | None = None,
) -> SceneSpec:
    """Draw a random scene of ``split`` whose subject stays inside the frame for the whole clip.

    ``motions`` and ``colors`` restrict the split's choices (they must belong to the split);
    ``shapes`` and ``backgrounds`` restrict :data:`SHAPES` and :data:`BACKGROUNDS`.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    split_motions, split_colors = SPLITS[split]
    motion_choices = _choices("motion", motions, split_motions, split)
    color_choices = _choices("colour", colors, split_colors, split)
    shape_choices = _choices("shape", shapes, SHAPES, split)
    background_choices = _choices("background", backgrounds, BACKGROUNDS, split)
    gen, seed = _as_rng(rng)

    shape = str(gen.choice(shape_choices))
    color = str(gen.choice(color_choices))
    background = str(gen.choice(background_choices))
    motion = str(gen.choice(motion_choices))
    size = float(gen.uniform(*SIZE_RANGE))
    params = MotionParams(
        amplitude=float(gen.uniform(*AMPLITUDE_RANGE)),
        speed=float(gen.uniform(*SPEED_RANGE)),
        phase=float(gen.uniform(0.0, 1.0)),
        sense=int(gen.choice([-1, 1])),
    )
    lo, hi, max_scale = motion_extent(motion, params)
    left, right, top, bottom = (e * size * max_scale for e in SHAPE_EXTENT[shape])
    x_lo, x_hi = _anchor_range(lo[0], hi[0], left, right)
    y_lo, y_hi = _anchor_range(lo[1], hi[1], top, bottom)
    if x_lo > x_hi or y_lo > y_hi:  # the jitter ranges are chosen so that this cannot happen
        raise ConfigError(f"motion {motion!r} with size {size:.2f} does not fit in the frame")
    anchor = (float(gen.uniform(x_lo, x_hi)), float(gen.uniform(y_lo, y_hi)))
    return SceneSpec(shape, color, background, motion, size, anchor, params, seed)


def sample_scenes(count: int, seed: int = 0, split: str = "base", **choices: Iterable[str] | None) -> list[SceneSpec]:
    """``count`` scenes drawn from one generator seeded with ``seed`` (see :func:`sample_scene`)."""
    if count < 0:
        raise ConfigError(f"scene count must be non-negative, got {count}")
    gen = np.random.default_rng(seed)
    return [sample_scene(gen, split, **choices) for _ in range(count)]
