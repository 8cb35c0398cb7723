"""Progress of long loops: a tqdm bar on a terminal, plain periodic lines elsewhere.

Under a log redirect (stderr not a terminal) a bar shows nothing useful, so :func:`progress`
prints lines such as ``training lora: step 120/400 (30%), loss 0.0123, 1.9 s/step, ETA 8m40s``
instead: after the first step, then every 5% of the run (at most one line per
:data:`MIN_SECONDS`), at least every :data:`MAX_SECONDS`, and at the end. ``TQDM_DISABLE`` turns
both off, as it does tqdm.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator

#: a line at every this share of the run ...
EVERY = 0.05
#: ... but not sooner than this many seconds after the previous line ...
MIN_SECONDS = 2.0
#: ... and at least this often
MAX_SECONDS = 30.0


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", unit: str = "step",
             initial: int = 0, disable: bool = False, **bar_options: Any) -> Any:
    """A tqdm bar when stderr is a terminal, else a :class:`LineProgress` (same calls: iterate,
    ``update``, ``set_postfix``, ``close``)."""
    if disable or os.environ.get("TQDM_DISABLE"):
        disable = True
    elif not sys.stderr.isatty():
        return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, **bar_options)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class LineProgress:
    """Plain progress lines on stderr (see the module docstring for when they are printed)."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
                 unit: str = "step", initial: int = 0) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit = desc, unit
        self.n = self.start = initial
        self.postfix: dict[str, Any] = {}
        self.began = self.last = time.monotonic()
        self.printed_at: int | None = None

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable if self.iterable is not None else ():
            yield item
            self.update(1)
        self.close()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.printed_at is None:
            due = True  # the first step: the run has started, and at what pace
        else:
            share = max(1, int(EVERY * (self.total or 0)))
            due = (self.n // share > self.printed_at // share and now - self.last >= MIN_SECONDS) or now - self.last >= MAX_SECONDS
        if due:
            self._print(now)

    def close(self) -> None:
        if self.printed_at != self.n and self.n > self.start:
            self._print(time.monotonic())

    def _print(self, now: float) -> None:
        done = self.n - self.start
        pace = (now - self.began) / max(1, done)
        parts = [f"{self.unit} {self.n}/{self.total} ({100 * self.n // max(1, self.total)}%)" if self.total else f"{self.unit} {self.n}"]
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        parts.append(f"{pace:.2g} s/{self.unit}" if pace < 10 else f"{pace:.0f} s/{self.unit}")
        if self.total:
            parts.append(f"ETA {_duration(pace * (self.total - self.n))}")
        print(f"{self.desc}: " * bool(self.desc) + ", ".join(parts), file=sys.stderr, flush=True)
        self.last, self.printed_at = now, self.n


__all__ = ["LineProgress", "progress"]
