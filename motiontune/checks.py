"""Range checks of numeric settings, shared by the training, recipe and sampling configs.

Each check refuses (ConfigError, one line naming the setting and the allowed range) a value that
is not a number, a bool given for a number, NaN or infinity, or a value out of range; numbers
given as text (e.g. ``1e-4`` from a YAML file, which YAML reads as a string) are converted.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from motiontune.errors import ConfigError

MAX_STEPS = 1_000_000
#: the largest learning rate accepted (far above any useful rate for these models)
MAX_LEARNING_RATE = 1.0
MAX_RANK = 1024
MAX_BATCH = 1024
#: frames, height and width of a clip
MAX_SIZE = 8192
#: first / last frame of the segment of a clip to use
MAX_FRAME_INDEX = 10_000_000
MAX_SAMPLING_STEPS = 10_000
MAX_GUIDANCE = 100.0
#: adapter scale, in either direction
MAX_SCALE = 10.0
MAX_SEED = 2**63 - 1


def _text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _range_text(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_text(low)}, {_text(high)}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {_text(low)}"
    if high is not None:
        return f"<= {_text(high)}"
    return "finite"


def number(name: str, value: Any, low: float | None = None, high: float | None = None, *, integer: bool = False,
           low_open: bool = False, optional: bool = False) -> Any:
    """``value`` checked as a finite number (a whole number with ``integer``) in ``[low, high]``
    (``(low, high]`` with ``low_open``); None passes when ``optional``. Returns the value, converted
    to a number when it was given as text."""
    if value is None and optional:
        return None
    what = f"a whole number {_range_text(low, high, low_open)}" if integer else f"a number {_range_text(low, high, low_open)}"
    if isinstance(value, str) and not integer:
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be {what} (got {value!r})") from None
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and not isinstance(value, numbers.Integral):
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise ConfigError(f"{name} must be {what} (got {value!r})")
    return value


__all__ = ["MAX_BATCH", "MAX_FRAME_INDEX", "MAX_GUIDANCE", "MAX_LEARNING_RATE", "MAX_RANK", "MAX_SAMPLING_STEPS", "MAX_SCALE", "MAX_SEED",
           "MAX_SIZE", "MAX_STEPS", "number"]
