"""How many CPU threads torch uses, chosen from the load on the machine.

On a CPU shared with other busy processes, torch's worker threads spin-wait for each other: on
2 cores, a run beside one single-threaded busy process took 3.4x its idle time with torch's
default of one thread per core, 1.5x with one thread. A fixed single thread, though, makes the
idle run slower. The ``auto`` policy therefore counts the cores other processes keep busy (from
``/proc/stat``, less this process's own CPU time) and uses the cores left, at least one:

* when the command starts (a 0.2 s sample), and
* again every :data:`RECHECK_SECONDS` at most, from :func:`tick`, which every denoiser call
  makes (training, sampling, the probe), so a run adapts when a neighbour starts or stops.

Settings, strongest first: ``--threads N`` (or ``auto``) on the command line, the environment
variable ``MOTIONTUNE_THREADS`` (``N``, ``auto`` or ``keep``), ``OMP_NUM_THREADS`` (torch's own
setting, kept as it is), else ``auto``. ``keep`` leaves torch's setting alone (the test suite
uses it: results can differ in the last bits between thread counts). Where ``/proc/stat`` is
missing (not Linux) ``auto`` keeps torch's default.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from motiontune.errors import ConfigError

ENV = "MOTIONTUNE_THREADS"
#: seconds between two load checks during a run
RECHECK_SECONDS = 3.0
#: the sample taken when the command starts
START_SAMPLE_SECONDS = 0.2
#: cores another process keeps this busy (or more) count as taken
TAKEN_SHARE = 0.5


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_threads(value: str | int | None) -> int | str | None:
    """``"auto"``, ``"keep"`` or a positive whole number (as int); None stays None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("auto", "keep"):
        return text
    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"--threads must be a positive whole number, auto or keep, got {value!r}") from None
    if n < 1:
        raise ConfigError(f"--threads must be 1 or more, got {n}")
    return n


def read_cpu_times() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine from ``/proc/stat``, or None where absent."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    values = [float(v) / ticks for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user time
    return total - idle, total


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Sample:
    wall: float
    busy: float
    own: float


def take_sample() -> Sample | None:
    times = read_cpu_times()
    if times is None:
        return None
    return Sample(time.monotonic(), times[0], own_cpu_seconds())


def others_busy(a: Sample, b: Sample) -> float:
    """Cores kept busy by other processes between two samples."""
    wall = b.wall - a.wall
    if wall <= 0:
        return 0.0
    return max(0.0, ((b.busy - a.busy) - (b.own - a.own)) / wall)


def threads_for(others: float, cores: int) -> int:
    """Threads to use when other processes keep ``others`` cores busy."""
    taken = int(others + (1 - TAKEN_SHARE))  # 0.5 core or more counts as a core
    return max(1, min(cores, cores - taken))


class ThreadPolicy:
    """The process's policy (see the module docstring); :func:`configure` makes the one in use."""

    def __init__(self, mode: int | str, cores: int | None = None) -> None:
        self.mode = mode
        self.cores = cores or available_cores()
        self.last: Sample | None = None
        self.threads: int | None = None
        self.changes = 0

    def start(self, sample_seconds: float = START_SAMPLE_SECONDS) -> None:
        import torch

        if isinstance(self.mode, int):
            self._set(torch, self.mode)
            return
        if self.mode != "auto":
            return
        first = take_sample()
        if first is None:
            return
        time.sleep(sample_seconds)
        self.last = take_sample()
        self._set(torch, threads_for(others_busy(first, self.last), self.cores))

    def tick(self) -> None:
        """Re-read the load when :data:`RECHECK_SECONDS` have passed; adjust the thread count."""
        if self.last is None or time.monotonic() - self.last.wall < RECHECK_SECONDS:
            return
        now = take_sample()
        if now is None:
            return
        want = threads_for(others_busy(self.last, now), self.cores)
        self.last = now
        if want != self.threads:
            import torch

            self._set(torch, want)

    def _set(self, torch, n: int) -> None:
        if self.threads is not None:
            self.changes += 1
        self.threads = n
        torch.set_num_threads(n)


_POLICY: ThreadPolicy | None = None


def configure(option: str | int | None = None) -> ThreadPolicy | None:
    """Set up the policy for this process from ``--threads`` (``option``), ``MOTIONTUNE_THREADS``
    or ``OMP_NUM_THREADS``; returns it (None: torch's setting is kept)."""
    global _POLICY
    mode = parse_threads(option)
    if mode is None:
        env = os.environ.get(ENV)
        if env:
            try:
                mode = parse_threads(env)
            except ConfigError as exc:
                raise ConfigError(f"{ENV}: {exc}") from None
    if mode is None:
        mode = "keep" if os.environ.get("OMP_NUM_THREADS") else "auto"
    if mode == "keep":
        _POLICY = None
        return None
    _POLICY = ThreadPolicy(mode)
    _POLICY.start()
    return _POLICY


def tick() -> None:
    """Called at every denoiser call: cheap unless a recheck is due."""
    if _POLICY is not None:
        _POLICY.tick()


def reset() -> None:
    """Forget the policy (torch keeps its present thread count)."""
    global _POLICY
    _POLICY = None


__all__ = ["ThreadPolicy", "available_cores", "configure", "others_busy", "parse_threads", "reset", "threads_for", "tick"]
