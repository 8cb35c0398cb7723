"""Run the toy suite for some recipes on the embedded toy model and record the table.

    python benchmarks/toy_suite.py --recipes none,lora --train-steps 200 --append-results docs/RESULTS.md
    python benchmarks/toy_suite.py --recipes none,lora,timestep --train-steps 400 --seeds 0,1,2 \\
        --output bench/toy-suite --append-results docs/RESULTS.md
    python benchmarks/toy_suite.py --table-only --from RUN/s0 --from RUN/s1 --from RUN/s2 \\
        --append-results docs/RESULTS.md
    python benchmarks/toy_suite.py --suite toy:joint --recipes none,lora,jointtuner,jointtuner@gate=none \\
        --train-steps 400 --seeds 0,1,2 --output bench/toy-joint --shard 0/2   # and --shard 1/2 beside it

``--suite toy:KINDS`` picks the scenario kinds (motion, appearance, joint, fewshot, all); a recipe
entry ``NAME@KEY=VALUE@...`` is a variant of a recipe (an ablation row), e.g. ``jointtuner@ait=false``.

Each (recipe, scenario) cell customizes the toy model on the scenario's reference (a clip of a
held-out motion, or still images of a held-out colour), generates the target prompts and
scores them with the toy oracle. Finished cells are kept in the output folder and skipped when
the command runs again. With ``--seeds`` the suite runs once per seed, into
``OUTPUT/seed<N>``; without it, once with ``--seed`` into ``OUTPUT`` itself.

The table has one row per recipe and scenario group (motion / appearance): for motion fidelity,
subject accuracy, appearance leakage, background accuracy and motion accuracy, the mean over
all finished (scenario, seed) cells of that row and a 95% t-interval of that mean
(mean +- t_{0.975, n-1} * sd / sqrt(n)); cells where a metric is not a number (e.g. motion
fidelity of an appearance scenario) are left out of that column's n. Then the mean wall
seconds per scenario and the cells behind the row: scenarios x seeds, and "k of m cells" when
the folders plan more cells of that group than the row has (a run still going).

``--table-only`` writes the table from existing output folders without running anything:
``--from DIR`` (repeatable; one seed's output folder each, the seed read from its bench.json),
or, without ``--from``, the folders a run with the same ``--output``/``--seed(s)`` would use.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from motiontune.errors import ConfigError, InputError
from motiontune.evaluation.runner import (
    MANIFEST_FILE,
    RESULT_FILE,
    BenchConfig,
    collect_results,
    read_manifest,
    recipe_applies,
    run_bench,
    split_cell_id,
)

sys.path.insert(0, os.path.dirname(__file__))
from results_doc import command_line, replace_section  # noqa: E402

COLUMNS = (
    ("toy_motion_fidelity", "motion fidelity"),
    ("toy_subject_accuracy", "subject accuracy"),
    ("toy_appearance_leakage", "leakage"),
    ("toy_background_accuracy", "background accuracy"),
    ("toy_motion_accuracy", "motion accuracy"),
)
GROUP_ORDER = ("motion", "appearance", "joint", "fewshot")
DEFAULT_RECIPES = "none,lora"
DEFAULT_TRAIN_STEPS = 200
DEFAULT_OUTPUT = "bench/toy-suite"

#: t_{0.975, df} for df = 1..60 (two-sided 95%); beyond 60 the normal 1.96 is used
T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
    2.0395, 2.0369, 2.0345, 2.0322, 2.0301, 2.0281, 2.0262, 2.0244, 2.0227, 2.0211,
    2.0195, 2.0181, 2.0167, 2.0154, 2.0141, 2.0129, 2.0117, 2.0106, 2.0096, 2.0086,
    2.0076, 2.0066, 2.0057, 2.0049, 2.0040, 2.0032, 2.0025, 2.0017, 2.0010, 2.0003,
)


def _scipy_t():
    try:
        from scipy.stats import t  # optional; not a dependency of the project
    except ImportError:
        return None
    return t


def t_quantile(df: int) -> float:
    """t_{0.975, df}: from scipy when it is installed, else from :data:`T975` (1.96 beyond df 60)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be 1 or more, got {df}")
    t = _scipy_t()
    if t is not None:
        return float(t.ppf(0.975, df))
    return T975[df - 1] if df <= len(T975) else 1.96


def t_source() -> str:
    return "scipy.stats.t" if _scipy_t() is not None else "a table of t quantiles (1.96 beyond 60 degrees of freedom)"


@dataclass
class Estimate:
    """Mean of n values and its 95% t-interval (low, high: NaN when n < 2; everything NaN when n = 0)."""

    mean: float
    low: float
    high: float
    n: int

    def text(self, cells: int) -> str:
        if self.n == 0:
            return "—"
        out = f"{self.mean:.3f}" + (f" [{self.low:.3f}, {self.high:.3f}]" if self.n >= 2 else "")
        if self.n != cells:
            out += f" (n={self.n})"
        return out


def mean_interval(values) -> Estimate:
    """The mean of the finite numbers among ``values`` and mean +- t_{0.975, n-1} * sd / sqrt(n)."""
    vals = [float(v) for v in values if finite(v)]
    n = len(vals)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = statistics.fmean(vals)
    if n == 1:
        return Estimate(mean, math.nan, math.nan, 1)
    half = t_quantile(n - 1) * statistics.stdev(vals) / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n)


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------------------------------
# Reading output folders
# ------------------------------------------------------------------------------------------


@dataclass
class SeedRun:
    """The finished cells of one seed (one output folder, or several holding shards of it)."""

    seed: int
    folders: list[str]
    results: list[dict]
    manifest: dict


def read_folders(folders: list[str]) -> list[SeedRun]:
    """One :class:`SeedRun` per seed found in ``folders`` (each an output folder of the runner);
    ConfigError for a folder that is missing, is no benchmark output, or ran with other settings."""
    by_seed: dict[int, list[str]] = {}
    settings: dict[str, tuple[str, dict]] = {}
    for folder in folders:
        if not os.path.isdir(folder):
            raise ConfigError(f"--from {folder}: no such folder")
        manifest = read_manifest(folder)
        seed = manifest.get("settings", {}).get("seed") if manifest else None
        if not isinstance(seed, int):
            raise ConfigError(f"--from {folder}: not a benchmark output folder (no readable {MANIFEST_FILE} with a seed)")
        rest = {k: v for k, v in manifest["settings"].items() if k != "seed"}
        if settings:
            first, other = next(iter(settings.values()))
            if other != rest:
                keys = sorted(k for k in set(other) | set(rest) if other.get(k) != rest.get(k))
                raise ConfigError(f"{folder} and {first} ran with other settings ({', '.join(keys)}); their cells cannot be pooled")
        settings.setdefault(folder, (folder, rest))
        by_seed.setdefault(seed, []).append(folder)
    runs = []
    for seed, dirs in by_seed.items():
        try:
            results, manifest = collect_results(dirs)
        except InputError as exc:
            raise ConfigError(str(exc)) from None
        runs.append(SeedRun(seed, dirs, results, manifest))
    return runs


@dataclass
class Row:
    recipe: str
    group: str
    cells: int
    expected: int
    scenarios: int
    seeds: int
    columns: dict[str, Estimate] = field(default_factory=dict)
    seconds: float = math.nan

    @property
    def complete(self) -> bool:
        return self.cells >= self.expected

    def cells_text(self) -> str:
        head = f"{self.scenarios} x {self.seeds}"
        if self.complete:
            return f"{head} ({self.cells} cell{'s' if self.cells != 1 else ''})"
        return f"{head} ({self.cells} of {self.expected} cells)"

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "group": self.group, "cells": self.cells, "expected": self.expected,
                "scenarios": self.scenarios, "seeds": self.seeds, "seconds_per_scenario": self.seconds,
                "columns": {k: vars(v) for k, v in self.columns.items()}}


def summarize(runs: list[SeedRun], recipes: list[str] | None = None) -> list[Row]:
    """One row per recipe and scenario group, over the (scenario, seed) cells of every run.

    A row's expected cell count is, over the seeds, the number of scenarios of its group that
    the folder plans (for any recipe), so a recipe that is behind the others shows it."""
    groups: dict[str, str] = {}
    scenario_info: dict[str, dict] = {}
    for run in runs:
        info = {s["id"]: s for s in run.manifest.get("scenarios", []) if "id" in s}
        scenario_info.update(info)
        groups.update({sid: s.get("group", "") for sid, s in info.items()})
        groups.update({r["scenario"]: r.get("group", groups.get(r["scenario"], "")) for r in run.results})
    found = list(dict.fromkeys([*(r for run in runs for r in run.manifest.get("recipes", [])),
                                *(r["recipe"] for run in runs for r in run.results)]))
    recipes = list(recipes) if recipes else found
    planned = {}
    for k, run in enumerate(runs):
        ids = {split_cell_id(c)[0] for c in run.manifest.get("cells", [])} | {r["scenario"] for r in run.results}
        planned[k] = ids
    all_groups = {groups.get(s, "") for ids in planned.values() for s in ids}
    order = [g for g in GROUP_ORDER if g in all_groups] + sorted(all_groups - set(GROUP_ORDER))
    rows = []
    for recipe in recipes:
        for group in order:
            sel = [(run.seed, r) for run in runs for r in run.results
                   if r["recipe"] == recipe and (r.get("group") or groups.get(r["scenario"], "")) == group]
            expected = sum(sum(1 for s in ids if groups.get(s, "") == group
                               and (s not in scenario_info or recipe_applies(recipe, scenario_info[s])))
                           for ids in planned.values())
            if not sel and not expected:
                continue  # a group the recipe takes no input of (synmotion on still images)
            row = Row(recipe, group, len(sel), expected, len({r["scenario"] for _, r in sel}), len({s for s, _ in sel}))
            for key, _ in COLUMNS:
                row.columns[key] = mean_interval(r.get("metrics", {}).get(key) for _, r in sel)
            walls = [r["seconds"]["wall"] for _, r in sel if finite(r.get("seconds", {}).get("wall"))]
            row.seconds = statistics.fmean(walls) if walls else math.nan
            rows.append(row)
    return rows


def table_lines(rows: list[Row]) -> list[str]:
    lines = ["| recipe | group | scenarios x seeds (cells) | " + " | ".join(c for _, c in COLUMNS) + " | s / scenario |",
             "|---|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for row in rows:
        vals = " | ".join(row.columns[k].text(row.cells) for k, _ in COLUMNS)
        secs = "—" if math.isnan(row.seconds) else f"{row.seconds:.0f}"
        lines.append(f"| {row.recipe} | {row.group or '(no group)'} | {row.cells_text()} | {vals} | {secs} |")
    return lines


@dataclass
class Comparison:
    """``a`` minus ``b`` over the (scenario, seed) cells both have, per metric (paired)."""

    a: str
    b: str
    group: str
    cells: int
    columns: dict[str, Estimate] = field(default_factory=dict)


def parse_compare(text: str | None) -> list[tuple[str, str]]:
    """``A:B[,C:D...]`` -> [(A, B), ...]; ConfigError naming a malformed pair."""
    pairs = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        a, sep, b = item.partition(":")
        if not sep or not a.strip() or not b.strip() or a.strip() == b.strip():
            raise ConfigError(f"--compare {item!r}: expected RECIPE_A:RECIPE_B (two different recipes), e.g. motiondirector:lora")
        pairs.append((a.strip(), b.strip()))
    return pairs


def compare(runs: list[SeedRun], pairs: list[tuple[str, str]]) -> list[Comparison]:
    """Paired differences: for each pair and scenario group, ``a - b`` on every (seed, scenario)
    cell that both recipes finished, with the mean's 95% t-interval. ConfigError for a recipe that
    no folder holds."""
    present = {r["recipe"] for run in runs for r in run.results}
    missing = sorted({x for pair in pairs for x in pair} - present)
    if missing:
        raise ConfigError(f"--compare: no finished cells of {', '.join(missing)} in the folders")
    out = []
    for a, b in pairs:
        cells: dict[str, dict[tuple[int, str], dict]] = {a: {}, b: {}}
        for run in runs:
            for r in run.results:
                if r["recipe"] in cells:
                    cells[r["recipe"]][(run.seed, r["scenario"])] = r
        both = sorted(set(cells[a]) & set(cells[b]))
        groups = list(dict.fromkeys(cells[a][k].get("group", "") for k in both))
        order = [g for g in GROUP_ORDER if g in groups] + [g for g in groups if g not in GROUP_ORDER]
        for group in order:
            keys = [k for k in both if cells[a][k].get("group", "") == group]
            comp = Comparison(a, b, group, len(keys))
            for key, _ in COLUMNS:
                diffs = []
                for k in keys:
                    va, vb = cells[a][k].get("metrics", {}).get(key), cells[b][k].get("metrics", {}).get(key)
                    if finite(va) and finite(vb):
                        diffs.append(float(va) - float(vb))
                comp.columns[key] = mean_interval(diffs)
            out.append(comp)
    return out


def comparison_lines(comparisons: list[Comparison]) -> list[str]:
    """The paired table: mean difference [95% interval], in bold where the interval excludes 0."""
    lines = ["| a - b | group | paired cells | " + " | ".join(c for _, c in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for c in comparisons:
        vals = []
        for key, _ in COLUMNS:
            est = c.columns[key]
            text = est.text(c.cells)
            if est.n >= 2 and (est.low > 0 or est.high < 0):
                text = f"**{text}**"
            vals.append(text)
        lines.append(f"| {c.a} - {c.b} | {c.group or '(no group)'} | {c.cells} | " + " | ".join(vals) + " |")
    return lines


def _cell_dates(runs: list[SeedRun]) -> tuple[str, str] | None:
    stamps = []
    for run in runs:
        for r in run.results:
            path = Path(r["_root"]) / "cells" / r["cell"] / RESULT_FILE
            if path.is_file():
                stamps.append(path.stat().st_mtime)
    if not stamps:
        return None
    return time.strftime("%Y-%m-%d", time.localtime(min(stamps))), time.strftime("%Y-%m-%d", time.localtime(max(stamps)))


GROUP_CAPTIONS = {
    "joint": ("Joint scenarios: 2 still images of a subject in a held-out colour (on two backgrounds) and one clip of a "
              "held-out motion performed by another subject on a third background; 2 targets ask for the image subject "
              "doing the clip's motion on the two remaining backgrounds; leakage counts the clip subject's colour and "
              "shape and the clip's background."),
    "fewshot": ("Few-shot scenarios: 3 clips of one held-out motion, each with its own subject and background; 3 targets "
                "ask for that motion with a colour, a shape and a background no reference has."),
}


def report(rows: list[Row], runs: list[SeedRun], command: str, ran_seconds: float | None,
           comparisons: list[Comparison] | None = None) -> str:
    """The section body: the caption (what each column is, the command, date, machine, steps) and the table."""
    settings = (runs[0].manifest.get("settings") or {}) if runs else {}
    train_steps = settings.get("train_steps")
    sample_steps = settings.get("steps")
    seeds = ", ".join(str(r.seed) for r in runs)
    cell_wall = sum(r["seconds"]["wall"] for run in runs for r in run.results if finite(r.get("seconds", {}).get("wall")))
    machine = f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {platform.machine()}"
    if ran_seconds is not None:
        when = f"{time.strftime('%Y-%m-%d')}, {machine}; this command ran {ran_seconds:.0f} s"
    else:
        dates = _cell_dates(runs)
        span = "" if dates is None else (f"; cells written {dates[0]}" + ("" if dates[0] == dates[1] else f" to {dates[1]}"))
        when = (f"table written {time.strftime('%Y-%m-%d')} from existing folders ({machine} of the machine writing it; "
                f"the folders do not record the machine the cells ran on){span}")
    steps = f"{train_steps} training steps per scenario" if train_steps is not None else "training steps not recorded"
    steps += "; the model's default sampling steps" if sample_steps is None else f"; {sample_steps} sampling steps"
    head = (f"Command: `{command.strip()}` — {when}. Seeds {seeds}; {steps}; wall time of all the cells "
            f"{cell_wall:.0f} s.")
    caption = (
        "Each metric entry: mean over the row's (scenario, seed) cells [95% t-interval of the mean: mean ± "
        f"t(0.975, n-1) · sd / √n, t from {t_source()}; not clipped to the metric's range]; n is the row's "
        "cell count unless the entry says (n=k): cells where the metric is not a number are left out (motion "
        "fidelity and leakage need a reference clip, so appearance scenarios have none: —). An entry from a "
        "single cell has no interval. "
        "\"scenarios x seeds (cells)\": distinct scenarios and seeds among the row's finished cells, and how many "
        "cells; \"k of m cells\" when the folders plan m cells of that group per recipe and the row has only k "
        "(a run still going or a failed cell), so its mean is over a smaller sample than a complete row's. "
        "s / scenario: mean wall seconds per cell (train, generate, score). "
        "Motion scenarios: one reference clip of a held-out motion; 3 targets that change the subject's shape and "
        "colour and the background. Appearance scenarios: 3 still images of a subject in the held-out colour; "
        "targets ask for it doing base motions. A cell's value of a metric is its mean over the cell's 3 target "
        "videos. Motion fidelity: frame-by-frame agreement of the generated subject's motion with the reference "
        "clip's, in [-1, 1] (1 the same motion, about 0 an unrelated one). Subject accuracy: share of videos whose "
        "subject has the asked colour and shape. Leakage: fraction of the reference's differing attributes "
        "(colour, shape, background) that show in the output (0 is best). Background accuracy: share of videos "
        "with the asked background. Motion accuracy: share of videos where the asked motion is the one of the "
        "vocabulary that best fits the subject's trajectory. `none` is the base model without tuning."
    )
    extra = [GROUP_CAPTIONS[g] for g in dict.fromkeys(r.group for r in rows) if g in GROUP_CAPTIONS and any(
        x.group == g and x.cells for x in rows)]
    if extra:
        caption += " " + " ".join(extra)
    paired = ""
    if comparisons:
        paired = ("\n\nPaired differences (a - b over the (scenario, seed) cells both recipes finished; mean [95% "
                  "t-interval]; in bold where the interval excludes 0):\n\n" + "\n".join(comparison_lines(comparisons)))
    short = [r for r in rows if not r.complete]
    note = ""
    if short:
        listed = ", ".join(f"{r.recipe} / {r.group} ({r.cells} of {r.expected})" for r in short)
        note = f"\n\n**Unequal samples:** not every row has all its cells: {listed}."
    return head + "\n\n" + "\n".join(table_lines(rows)) + "\n\n" + caption + note + paired


# ------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r}: seeds must be 0 or more")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: a seed is listed twice")
    return seeds


def parse_settings(items: list[str]) -> dict[str, dict]:
    settings: dict[str, dict] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set {item!r}: expected RECIPE.KEY=VALUE, e.g. timestep.tau=600")
        key, value = item.split("=", 1)
        recipe, name = key.split(".", 1)
        try:
            parsed = json.loads(value) if value[:1] in "[{0123456789-" else value
        except json.JSONDecodeError:
            raise ConfigError(f"--set {item!r}: {value!r} is not a number or JSON value") from None
        settings.setdefault(recipe, {})[name] = parsed
    return settings


def _check_writable(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigError(f"--append-results {path}: folder {parent} does not exist")


def _check_existing(cfg: BenchConfig) -> None:
    """A folder that already holds a run must hold one with these settings (checked before any seed runs)."""
    manifest = read_manifest(cfg.output)
    if manifest.get("suite") and manifest["suite"] != cfg.suite:
        raise ConfigError(f"{cfg.output} holds a run of the suite {manifest['suite']!r}, not {cfg.suite!r}; use another --output")
    old = manifest.get("settings")
    if not old:
        return
    new = json.loads(json.dumps(cfg.fingerprint()))
    if old != new:
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ConfigError(f"{cfg.output} holds a run with other settings ({', '.join(keys)}); use another --output")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", default=None, help=f"comma-separated (default for a run: {DEFAULT_RECIPES}; "
                   "with --table-only: every recipe in the folders)")
    p.add_argument("--backbone", default="toy")
    p.add_argument("--suite", default="toy", help="toy (motion + appearance scenarios) or toy:KINDS, e.g. toy:joint or toy:all")
    p.add_argument("--shard", default=None, metavar="i/n", help="run every n-th cell starting at i (parallel processes)")
    p.add_argument("--train-steps", type=int, default=None, help=f"default {DEFAULT_TRAIN_STEPS}")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="output folder (with --seeds: OUTPUT/seed<N> per seed)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="one seed, output into OUTPUT itself (default 0)")
    p.add_argument("--seeds", default=None, metavar="0,1,2", help="run once per seed into OUTPUT/seed<N>")
    p.add_argument("--set", action="append", default=[], metavar="RECIPE.KEY=VALUE", help="recipe setting, e.g. timestep.tau=600")
    p.add_argument("--table-only", action="store_true", help="run nothing: write the table from existing folders")
    p.add_argument("--from", dest="sources", action="append", default=[], metavar="DIR",
                   help="with --table-only: one seed's output folder (repeatable)")
    p.add_argument("--compare", default=None, metavar="A:B,...",
                   help="also a table of paired differences A - B per scenario group, e.g. motiondirector:lora")
    p.add_argument("--append-results", default=None)
    p.add_argument("--section", default="## Toy suite")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.seed is not None and args.seeds is not None:
            raise ConfigError("give --seed or --seeds, not both")
        seeds = parse_seeds(args.seeds) if args.seeds is not None else [args.seed or 0]
        pairs = parse_compare(args.compare)
        if args.sources and not args.table_only:
            raise ConfigError("--from reads existing folders and runs nothing; add --table-only")
        if args.table_only:
            run_only = [flag for flag, given in (("--train-steps", args.train_steps is not None), ("--steps", args.steps is not None),
                                                 ("--limit", args.limit is not None), ("--set", bool(args.set)),
                                                 ("--backbone", args.backbone != "toy"), ("--shard", args.shard is not None),
                                                 ("--suite", args.suite != "toy")) if given]
            if run_only:
                raise ConfigError(f"--table-only runs nothing; {', '.join(run_only)} only apply to a run")
            if args.sources and (args.seeds is not None or args.seed is not None or args.output != DEFAULT_OUTPUT):
                raise ConfigError("--from names the folders (and their seeds); leave out --seed, --seeds and --output")
        folders = args.sources or ([os.path.join(args.output, f"seed{s}") for s in seeds] if args.seeds is not None
                                   else [args.output])
        recipes = [r.strip() for r in (args.recipes or ("" if args.table_only else DEFAULT_RECIPES)).split(",") if r.strip()]
        if args.append_results:
            _check_writable(args.append_results)
        configs = []
        if args.table_only:
            runs = read_folders(folders)  # fails on a missing folder before anything is written
        else:
            from motiontune.evaluation.runner import check_recipes, parse_shard, split_recipe

            recipes = check_recipes(recipes)
            absent = sorted({x for pair in pairs for x in pair} - set(recipes))
            if absent:
                raise ConfigError(f"--compare names recipe(s) not in --recipes: {', '.join(absent)}")
            shard = parse_shard(args.shard)
            settings = parse_settings(args.set)
            unknown = sorted(set(settings) - {"*", *(split_recipe(r)[0] for r in recipes)})
            if unknown:
                raise ConfigError(f"--set for recipe(s) not in --recipes: {', '.join(unknown)}")
            train_steps = DEFAULT_TRAIN_STEPS if args.train_steps is None else args.train_steps
            if train_steps < 1:
                raise ConfigError(f"--train-steps must be 1 or more, got {train_steps}")
            for seed, folder in zip(seeds, folders):
                cfg = BenchConfig(suite=args.suite, recipes=list(recipes), backbone=args.backbone, output=folder, steps=args.steps,
                                  train_steps=train_steps, seed=seed, limit=args.limit, recipe_settings=settings,
                                  formats=("gif",), progress=True, shard=shard)
                _check_existing(cfg)
                configs.append(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    t0 = time.time()
    if configs:
        for cfg in configs:
            print(f"seed {cfg.seed}: {cfg.output}")
            run_bench(cfg, log=print)
        runs = read_folders(folders)
    rows = summarize(runs, recipes if args.table_only and recipes else None)
    for row in rows:
        print(json.dumps(row.to_dict()))
    try:
        comparisons = compare(runs, pairs) if pairs else None
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    body = report(rows, runs, command_line(__file__, argv), None if args.table_only else time.time() - t0, comparisons)
    print(body)
    if args.append_results:
        replace_section(args.append_results, args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
