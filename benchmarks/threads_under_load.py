"""The demo's wall time idle and beside a single-threaded busy process, under the thread policy
of motiontune.utils.threads (``auto``) and under torch's default (``keep``), in one run.

    python benchmarks/threads_under_load.py --append-results docs/RESULTS.md
    python benchmarks/threads_under_load.py --steps 40 --runs keep-idle,auto-idle,auto-load
    python benchmarks/threads_under_load.py --runs keep-idle,auto-idle,auto-load --repeats 3

Each run is ``motiontune demo --steps STEPS`` in a fresh process (its own output folder), with
``MOTIONTUNE_THREADS`` set to the run's policy; a ``-load`` run starts ``python -c "while True:
pass"`` first and stops it after. With ``--repeats R`` the list of runs is done R times over
(interleaved, so that a drift of the machine touches every kind alike) and each kind's median is
compared. Targets: auto under load <= 1.6x auto idle, and auto idle no
more than 5% slower than keep idle. The load on the machine before each run (cores kept busy by
other processes) is recorded: the figures mean something only when it is near 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from results_doc import command_line, replace_section  # noqa: E402

RUNS = ("keep-idle", "auto-idle", "auto-load", "keep-load")


def machine_load(seconds: float = 1.0) -> float | None:
    from motiontune.utils.threads import others_busy, take_sample

    a = take_sample()
    if a is None:
        return None
    time.sleep(seconds)
    return others_busy(a, take_sample())


def run_demo(policy: str, loaded: bool, steps: int | None, folder: str, log) -> dict:
    env = {**os.environ, "MOTIONTUNE_THREADS": policy, "TQDM_DISABLE": "1"}
    env.pop("OMP_NUM_THREADS", None)
    cmd = [sys.executable, "-m", "motiontune.cli", "demo", "--output", folder, "--quiet"]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    before = machine_load()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if loaded else None
    try:
        if busy:
            time.sleep(1.0)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    finally:
        if busy:
            busy.kill()
            busy.wait()
    if done.returncode != 0:
        raise SystemExit(f"demo failed ({policy}, {'load' if loaded else 'idle'}): {done.stderr.strip().splitlines()[-1:]}")
    log(f"{policy}-{'load' if loaded else 'idle'}: {seconds:.1f} s (load before: {before if before is None else round(before, 2)} cores)")
    return {"policy": policy, "loaded": loaded, "seconds": seconds, "load_before": before}


def summarize(runs: list[dict]) -> dict[str, dict]:
    """Runs (several per kind with repeats) -> per kind: median seconds, every time, the largest load before."""
    import statistics

    out: dict[str, dict] = {}
    for r in runs:
        name = f"{r['policy']}-{'load' if r['loaded'] else 'idle'}"
        out.setdefault(name, {"times": [], "loads": []})
        out[name]["times"].append(r["seconds"])
        out[name]["loads"].append(r["load_before"])
    for v in out.values():
        v["seconds"] = statistics.median(v["times"])
        loads = [x for x in v["loads"] if x is not None]
        v["load_before"] = max(loads) if loads else None
    return out


def report(results: dict[str, dict], command: str, cores: int, steps: int | None) -> str:
    lines = [f"Command: `{command}`", "",
             f"`motiontune demo{'' if steps is None else f' --steps {steps}'}` in a fresh process per run, {cores} cores; "
             "`-load`: beside one single-threaded busy process (`python -c \"while True: pass\"`). "
             "`auto`: the thread policy (cores other processes leave free, rechecked every 3 s); "
             "`keep`: torch's default (one thread per core). Other processes' load before each run in cores.", "",
             "| run | seconds (median) | every run | load before (cores, largest) |", "|---|---|---|---|"]
    for name, r in results.items():
        load = "n/a" if r["load_before"] is None else f"{r['load_before']:.2f}"
        times = ", ".join(f"{t:.1f}" for t in r.get("times", [r["seconds"]]))
        lines.append(f"| {name} | {r['seconds']:.1f} | {times} | {load} |")
    lines.append("")
    sec = {k: v["seconds"] for k, v in results.items()}
    if "auto-load" in sec and "auto-idle" in sec:
        r = sec["auto-load"] / sec["auto-idle"]
        lines.append(f"- auto under load / auto idle: **{r:.2f}x** (target <= 1.6x: {'met' if r <= 1.6 else 'NOT met'})")
    if "auto-idle" in sec and "keep-idle" in sec:
        r = sec["auto-idle"] / sec["keep-idle"]
        lines.append(f"- auto idle / keep idle: **{r:.2f}x** (target <= 1.05x: {'met' if r <= 1.05 else 'NOT met'})")
    if "keep-load" in sec and "keep-idle" in sec:
        lines.append(f"- keep under load / keep idle: {sec['keep-load'] / sec['keep-idle']:.2f}x (torch's default, for comparison)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=None, help="demo training steps (default: the demo's)")
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma list of {', '.join(RUNS)}")
    p.add_argument("--repeats", type=int, default=1, help="do the list of runs this many times (medians compared)")
    p.add_argument("--output-json", default=None)
    p.add_argument("--append-results", default=None)
    p.add_argument("--section", default="## Speed under load")
    args = p.parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    bad = [r for r in runs if r not in RUNS]
    if bad or not runs:
        print(f"error: unknown run(s) {', '.join(bad) or '(none)'}; choose from {', '.join(RUNS)}", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print(f"error: --repeats must be 1 or more, got {args.repeats}", file=sys.stderr)
        return 2
    if args.steps is not None and args.steps < 1:
        print(f"error: --steps must be 1 or more, got {args.steps}", file=sys.stderr)
        return 2
    from motiontune.utils.threads import available_cores

    done: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for k, name in enumerate(runs):
                policy, state = name.split("-")
                done.append(run_demo(policy, state == "load", args.steps, os.path.join(tmp, f"run{rep}-{k}"), print))
    results = summarize(done)
    body = report(results, command_line(__file__, argv), available_cores(), args.steps)
    print(body)
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2)
    if args.append_results:
        replace_section(args.append_results, args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
