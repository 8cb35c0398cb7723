"""Scoring videos by metric name, and the benchmark runner (recipe x scenario cells).

:func:`evaluate_video` scores one video with weight-free metrics, learned metrics (when a
:class:`~motiontune.evaluation.learned.LearnedScorer` has their weights) and extra scorers such
as the toy-world oracle. :func:`run_bench` tunes every recipe on every scenario of a suite,
generates the scenario's prompts, scores them and writes one ``result.json`` per cell; it
resumes (finished cells are skipped) and shards (``shard=(i, n)`` runs every n-th cell).
:func:`merge_results` gathers cells from one or more output folders and writes the reports.

Output folder layout::

    bench.json                       run settings and the planned cells
    cells/SCENARIO/RECIPE/adapter/   the trained adapter (api.train output)
    cells/SCENARIO/RECIPE/videos/    generated videos (mp4 + gif)
    cells/SCENARIO/RECIPE/result.json
    references/SCENARIO.gif          the reference clip at the generated size
    results.csv, results.json, summary.md, report.html, plots/*.png
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from motiontune.errors import ConfigError, InputError
from motiontune.evaluation.learned import LEARNED_METRICS, LearnedScorer, WeightSources
from motiontune.evaluation.metrics import as_uint8_video
from motiontune.evaluation.registry import METRICS, MetricValue, compute_metrics
from motiontune.evaluation.suites import Scenario, Suite, load_suite
from motiontune.utils.targets import check_target, resolve_target

NONE_RECIPE = "none"
RESULT_FILE = "result.json"
MANIFEST_FILE = "bench.json"

# ------------------------------------------------------------------------------------------
# Extra scorers (metrics that are not in the registry: e.g. the toy-world oracle)
# ------------------------------------------------------------------------------------------

#: name -> fn(video uint8 (F, H, W, 3), prompt, reference video or None) -> {metric: value}
Scorer = Callable[[np.ndarray, str, "np.ndarray | None"], dict[str, float]]
#: name -> a Scorer, or a "package.module:function" string naming one (imported on first use)
SCORERS: dict[str, Scorer | str] = {}


def register_scorer(name: str, scorer: Scorer | str) -> None:
    """Add an extra scorer that scenarios can ask for by name (``Scenario.scorers``): a callable,
    or a ``"package.module:function"`` string imported only when the scorer is used."""
    try:
        check_target(scorer)
    except ValueError as exc:
        raise ConfigError(f"scorer {name!r}: {exc}") from exc
    SCORERS[name] = scorer


def get_scorer(name: str) -> Scorer:
    """The registered scorer ``name`` (imported now if it was registered by name)."""
    if name not in SCORERS:
        raise ConfigError(f"unknown scorer {name!r}; known: {', '.join(sorted(SCORERS))}")
    try:
        return resolve_target(SCORERS[name])
    except ImportError as exc:
        raise ConfigError(f"the {name} scorer is not available ({exc})") from exc


# the toy-world oracle metrics, prefixed toy_ (motiontune/toyworld/plugin.py; this module never
# imports the toy world itself)
register_scorer("toy", "motiontune.toyworld.plugin:bench_scores")


# ------------------------------------------------------------------------------------------
# Scoring one video
# ------------------------------------------------------------------------------------------


def default_metrics() -> list[str]:
    """Every registered metric: the weight-free ones first, then those needing weights."""
    return [n for n, i in METRICS.items() if not i.needs_weights] + [n for n, i in METRICS.items() if i.needs_weights]


def check_metric_names(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(sorted(METRICS))}")
    return names


def video_to_uint8(video: Any) -> np.ndarray:
    """A generated video tensor (3, F, H, W) in [-1, 1], or an (F, H, W, 3) array, as uint8 (F, H, W, 3)."""
    import torch

    if isinstance(video, torch.Tensor):
        v = ((video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return v.permute(1, 2, 3, 0).contiguous().numpy()
    return as_uint8_video(np.asarray(video))


def match_reference(reference: Any, num_frames: int, height: int, width: int) -> np.ndarray:
    """A reference clip (path or array) resampled to ``num_frames`` (uniformly, repeating frames of a
    shorter clip) and resized/centre-cropped to ``height`` x ``width``, as uint8 (F, H, W, 3)."""
    from motiontune.data.frames import prepare_video

    tensor = prepare_video(reference, num_frames, height, width, allow_repeat=True)
    return video_to_uint8(tensor)


def _read_images(images: Sequence[Any]) -> list[np.ndarray]:
    from motiontune.data.video_io import read_image

    return [np.asarray(i, dtype=np.uint8) if isinstance(i, np.ndarray) else read_image(i) for i in images]


def evaluate_video(
    video: np.ndarray,
    metrics: Iterable[str],
    *,
    reference: np.ndarray | None = None,
    prompt: str | None = None,
    reference_images: Sequence[np.ndarray] | np.ndarray | None = None,
    scorer: LearnedScorer | None = None,
    scorers: Iterable[str] = (),
) -> dict[str, MetricValue]:
    """Score one uint8 (F, H, W, 3) video: a number per metric or a ``"skipped: ..."`` message.

    ``reference`` (a video) is resampled to the video's frame count and size if needed;
    ``reference_images`` default to the reference's frames. Learned metrics go to ``scorer``
    (skipped with a "needs ..." message when it is absent or lacks their weights); metrics with
    a missing input or too short a video are reported as skipped with the reason. ``scorers``
    names extra scorers from :data:`SCORERS`, whose metrics are added to the result.
    """
    video = as_uint8_video(video)
    names = check_metric_names(metrics)
    if reference is not None:
        reference = as_uint8_video(reference, "reference")
        if reference.shape != video.shape:
            reference = match_reference(reference, *video.shape[:3])
    if reference_images is None and reference is not None:
        reference_images = reference
    scorer = scorer or LearnedScorer()
    results: dict[str, MetricValue] = {}
    learned_names = [n for n in names if n in LEARNED_METRICS]
    learned_scores = scorer.score(learned_names, video, prompt=prompt, reference_images=reference_images,
                                  reference=reference) if learned_names else {}
    for name in names:
        info = METRICS[name]
        if name in learned_scores:
            results[name] = learned_scores[name]
        elif info.kind == "video+reference" and reference is None and info.function is not None:
            results[name] = "skipped: needs a reference video"
        else:
            try:
                results.update(compute_metrics([name], video, reference if info.kind == "video+reference" else None))
            except InputError as exc:
                results[name] = f"skipped: {exc}"
    for extra in scorers:
        results.update(get_scorer(extra)(video, prompt or "", reference))
    return results


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_undefined(value: Any) -> bool:
    """Whether a metric value is ``"n/a: REASON"``: computed, but undefined for this video."""
    return isinstance(value, str) and value.startswith("n/a")


# ------------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One (scenario, recipe) pair; ``index`` is its position in the unsharded plan."""

    index: int
    scenario: Scenario
    recipe: str

    @property
    def id(self) -> str:
        return f"{self.scenario.id}/{self.recipe}"


def split_cell_id(cell_id: str) -> tuple[str, str]:
    """A cell's id (:attr:`Cell.id`, ``SCENARIO/RECIPE``) -> (scenario id, recipe)."""
    parts = cell_id.rsplit("/", 1)
    return parts[0], parts[-1]


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    if text is None:
        return (0, 1)
    if isinstance(text, tuple):
        i, n = text
    else:
        try:
            i_text, n_text = str(text).split("/")
            i, n = int(i_text), int(n_text)
        except ValueError:
            raise ConfigError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"shard {i}/{n}: need 0 <= i < n")
    return (i, n)


def recipe_applies(recipe: str, scenario: Scenario | dict[str, Any]) -> bool:
    """Whether the bench plans a cell of ``recipe`` (a name or variant) on ``scenario``: not when
    the scenario gives still images and the recipe takes none (e.g. ``synmotion``)."""
    from motiontune.recipes import get_recipe_class, recipe_names

    name = split_recipe(recipe)[0]
    images = scenario.get("images") if isinstance(scenario, dict) else scenario.images
    if name == NONE_RECIPE or not images or name not in recipe_names():
        return True
    return get_recipe_class(name).accepts_images


def plan_cells(suite: Suite | Sequence[Scenario], recipes: Sequence[str], shard: tuple[int, int] = (0, 1)) -> list[Cell]:
    """All cells scenario-major (each scenario's recipes together), then every n-th from i. A
    recipe gets no cell on a scenario whose input it does not take (:func:`recipe_applies`)."""
    scenarios = suite.scenarios if isinstance(suite, Suite) else list(suite)
    i, n = parse_shard(shard)
    pairs = [(s, r) for s in scenarios for r in recipes if recipe_applies(r, s)]
    cells = [Cell(k, s, r) for k, (s, r) in enumerate(pairs)]
    return [c for c in cells if c.index % n == i]


VARIANT_SEP = "@"


def split_recipe(spec: str) -> tuple[str, dict[str, Any]]:
    """A bench recipe entry ``NAME`` or ``NAME@KEY=VALUE@KEY=VALUE`` (a variant: the recipe with
    these settings, e.g. ``jointtuner@gate=none`` for an ablation row) as (name, settings).
    Values are read as YAML scalars (``0``, ``1.5``, ``false``, ``none``)."""
    import yaml

    name, *items = str(spec).strip().split(VARIANT_SEP)
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"recipe variant {spec!r}: each part after {VARIANT_SEP!r} must be KEY=VALUE, got {item!r}")
        if key in settings:
            raise ConfigError(f"recipe variant {spec!r}: {key} given twice")
        settings[key] = yaml.safe_load(value)
    return name.strip(), settings


def check_recipes(recipes: Sequence[str]) -> list[str]:
    """Check a bench's recipe list (names, or variants ``NAME@KEY=VALUE``): known names, each
    entry once, a variant's settings accepted by its recipe."""
    from motiontune.recipes import make_recipe, recipe_names

    recipes = [r.strip() for r in recipes if r.strip()]
    if not recipes:
        raise ConfigError("give at least one recipe (e.g. --recipes none,lora)")
    if len(set(recipes)) != len(recipes):
        raise ConfigError(f"recipes listed twice: {', '.join(recipes)}")
    known = [NONE_RECIPE, *recipe_names()]
    parsed = {r: split_recipe(r) for r in recipes}
    unknown = [r for r, (name, _) in parsed.items() if name not in known]
    if unknown:
        raise ConfigError(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for spec, (name, settings) in parsed.items():
        if settings and name == NONE_RECIPE:
            raise ConfigError(f"{spec}: the base model ({NONE_RECIPE}) takes no settings")
        if settings:
            make_recipe(name, **settings)  # an unknown key or a bad value fails here, before any run
    return recipes


@dataclass
class BenchConfig:
    """Settings of a benchmark run (see ``motiontune bench --help``)."""

    suite: str
    recipes: list[str]
    backbone: str
    output: str = "bench"
    family: str | None = None
    #: sampling steps (None: the backbone's / the adapter's default)
    steps: int | None = None
    train_steps: int = 300
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    guidance: float | None = None
    seed: int = 0
    shard: tuple[int, int] = (0, 1)
    #: metric names (None: every registered metric; missing weights are reported as skipped)
    metrics: list[str] | None = None
    weights: WeightSources = field(default_factory=WeightSources)
    device: str | None = None
    dtype: str = "fp32"
    #: recipe settings: key "*" for every trained recipe, or a recipe name
    recipe_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: further api.train settings (learning_rate, batch_size, ...)
    train_settings: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    scenarios: list[str] | None = None
    formats: tuple[str, ...] = ("mp4", "gif")
    progress: bool = False

    def fingerprint(self) -> dict[str, Any]:
        """The settings that make results comparable; a resumed run must match them."""
        return {
            "backbone": self.backbone, "family": self.family, "steps": self.steps, "train_steps": self.train_steps,
            "size": [self.num_frames, self.height, self.width], "guidance": self.guidance, "seed": self.seed,
            "dtype": self.dtype, "recipe_settings": self.recipe_settings, "train_settings": self.train_settings,
        }


@dataclass
class BenchRun:
    """What :func:`run_bench` did: cells run now, cells found finished, and the reports written."""

    output: str
    planned: list[str]
    ran: list[str]
    skipped: list[str]
    reports: dict[str, str] = field(default_factory=dict)
    complete: bool = False


def _atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return value


def write_json(path: str | Path, data: Any) -> None:
    _atomic_write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


def cell_dir(output: str | Path, scenario_id: str, recipe: str) -> Path:
    return Path(output) / "cells" / scenario_id / recipe


def read_result(path: str | Path) -> dict[str, Any] | None:
    """A cell's result, or None when it is absent or unreadable (an interrupted write)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "cell" in data else None


def _recipe_settings(config: BenchConfig, recipe: str) -> dict[str, Any]:
    """``--set`` settings for every recipe, then for this recipe's name, then the variant's own."""
    name, variant = split_recipe(recipe)
    return {**config.recipe_settings.get("*", {}), **config.recipe_settings.get(name, {}), **variant}


def _update_manifest(config: BenchConfig, suite: Suite, cells: list[Cell], metrics: list[str]) -> None:
    path = Path(config.output) / MANIFEST_FILE
    manifest: dict[str, Any] = {}
    if path.exists():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: unreadable ({exc}); remove it or use another --output") from exc
        if manifest.get("suite") and manifest["suite"] != config.suite:
            raise ConfigError(f"{config.output} holds a run of the suite {manifest['suite']!r}, not {config.suite!r}; use another --output")
        old = manifest.get("settings", {})
        new = _json_safe(config.fingerprint())
        if old and old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(f"{config.output} holds a run with other settings ({', '.join(diff)}); use another --output")
    recipes = list(dict.fromkeys([*manifest.get("recipes", []), *config.recipes]))
    scenarios = {s["id"]: s for s in manifest.get("scenarios", [])}
    scenarios.update({s.id: s.to_dict() for s in suite.scenarios})
    planned = list(dict.fromkeys([*manifest.get("cells", []), *(c.id for c in cells)]))
    # a cell planned by an older version on a scenario its recipe does not take is dropped
    planned = [c for c, (s, r) in ((c, split_cell_id(c)) for c in planned)
               if s not in scenarios or recipe_applies(r, scenarios[s])]
    write_json(path, {
        "suite": config.suite, "settings": config.fingerprint(), "recipes": recipes,
        "metrics": list(dict.fromkeys([*manifest.get("metrics", []), *metrics])),
        "scenarios": list(scenarios.values()), "cells": planned,
    })


def run_bench(config: BenchConfig, log: Callable[[str], None] | None = None) -> BenchRun:
    """Run (this shard's share of) a benchmark; finished cells are skipped.

    Reports are written when every planned cell of the output folder has a result (always for
    an unsharded run; for shards, by whichever finishes last — or run :func:`merge_results`).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    recipes = check_recipes(config.recipes)
    config.recipes = recipes
    config.shard = parse_shard(config.shard)
    metrics = check_metric_names(config.metrics) if config.metrics else default_metrics()
    if config.train_steps < 1:
        raise ConfigError(f"train steps must be at least 1, got {config.train_steps}")
    unknown_prefix = sorted(set(config.recipe_settings) - {"*", *recipes})
    if unknown_prefix:
        raise ConfigError(f"settings given for recipe(s) not in the run: {', '.join(unknown_prefix)}")
    suite = load_suite(config.suite, limit=config.limit, only=config.scenarios)
    all_cells = plan_cells(suite, recipes)
    mine = plan_cells(suite, recipes, config.shard)
    for s in suite.scenarios:
        unknown = [x for x in s.scorers if x not in SCORERS]
        if unknown:
            raise ConfigError(f"scenario {s.id!r} asks for unknown scorer(s) {', '.join(unknown)}")
    for name in sorted({x for s in suite.scenarios for x in s.scorers}):
        get_scorer(name)  # a scorer registered by name must import: fail before hours of training
    scorer = LearnedScorer(config.weights, device=_metric_device(config.device))
    scorer.check(metrics)  # weights that were given must load: fail before hours of training
    os.makedirs(config.output, exist_ok=True)
    _update_manifest(config, suite, all_cells, metrics)

    ran, skipped = [], []
    for n, cell in enumerate(mine, 1):
        target = cell_dir(config.output, cell.scenario.id, cell.recipe) / RESULT_FILE
        if read_result(target) is not None:
            skipped.append(cell.id)
            continue
        log(f"[{n}/{len(mine)}] {cell.id}")
        result = run_cell(cell, config, metrics, scorer)
        write_json(target, result)
        ran.append(cell.id)
    run = BenchRun(config.output, [c.id for c in mine], ran, skipped)
    missing = _missing_cells(config.output)
    run.complete = not missing
    if run.complete:
        run.reports = merge_results([config.output], scorer=scorer)
    else:
        log(f"{len(missing)} cell(s) of {config.output} still to run (other shards); "
            f"merge with: motiontune bench-merge {config.output}")
    return run


def _metric_device(device: str | None) -> str:
    from motiontune.api import resolve_device

    return resolve_device(device)


def _missing_cells(output: str | Path) -> list[str]:
    manifest = read_manifest(output)
    return [c for c in manifest.get("cells", []) if read_result(Path(output) / "cells" / c / RESULT_FILE) is None]


def read_manifest(output: str | Path) -> dict[str, Any]:
    path = Path(output) / MANIFEST_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _size(config: BenchConfig, scenario: Scenario) -> tuple[int | None, int | None, int | None]:
    fallback = scenario.size or (None, None, None)
    return (config.num_frames or fallback[0], config.height or fallback[1], config.width or fallback[2])


def run_cell(cell: Cell, config: BenchConfig, metrics: list[str], scorer: LearnedScorer) -> dict[str, Any]:
    """Train (unless the recipe is ``none``), generate the scenario's prompts, score; the cell's result."""
    from motiontune import api

    s, recipe = cell.scenario, cell.recipe
    folder = cell_dir(config.output, s.id, recipe)
    num_frames, height, width = _size(config, s)
    common = dict(family=config.family, num_frames=num_frames, height=height, width=width,
                  device=config.device, dtype=config.dtype)
    t_start = time.perf_counter()
    train_info = None
    adapter = None
    if recipe != NONE_RECIPE:
        adapter = folder / "adapter"
        result = api.train(
            config.backbone, videos=list(s.videos), captions=list(s.captions), output_dir=str(adapter), recipe=split_recipe(recipe)[0],
            images=list(s.images) or None, image_captions=list(s.image_captions) or None,
            recipe_settings=_recipe_settings(config, recipe), steps=config.train_steps, seed=config.seed,
            progress=config.progress, **common, **config.train_settings,
        )
        train_info = {"steps": result.steps, "final_loss": result.final_loss, "seconds": result.seconds}
    t_trained = time.perf_counter()
    videos_dir = folder / "videos"
    if videos_dir.exists():
        shutil.rmtree(videos_dir)  # left by an interrupted attempt
    generated = api.generate(
        list(s.prompts), adapter=str(adapter) if adapter else None, backbone=config.backbone, output_dir=str(videos_dir),
        formats=list(config.formats), steps=config.steps, guidance=config.guidance, seed=config.seed,
        progress=config.progress, **common,
    )
    t_generated = time.perf_counter()
    clips = [video_to_uint8(v) for v in generated.videos]
    frames, h, w = clips[0].shape[:3]
    reference = match_reference(s.videos[0], frames, h, w) if s.videos else None
    ref_images = _read_images(s.images) if s.images else reference
    ref_file = _write_reference_preview(config.output, s, reference, ref_images)
    per_prompt = []
    paths = list(generated.paths)
    per_video = len(paths) // max(1, len(clips))
    for k, (prompt, clip) in enumerate(zip(s.prompts, clips)):
        scores = evaluate_video(clip, metrics, reference=reference, prompt=prompt, reference_images=ref_images,
                                scorer=scorer, scorers=s.scorers)
        files = [os.path.relpath(p, config.output) for p in paths[k * per_video : (k + 1) * per_video]]
        per_prompt.append({"prompt": prompt, "files": files, "metrics": scores})
    t_scored = time.perf_counter()
    means, skipped = summarize_scores([p["metrics"] for p in per_prompt])
    return {
        "cell": cell.id, "index": cell.index, "scenario": s.id, "recipe": recipe, "group": s.group,
        "backbone": config.backbone, "suite": config.suite, "caption": s.caption,
        "reference": ref_file, "videos": per_prompt, "metrics": means, "skipped": skipped,
        "seconds": {"train": t_trained - t_start, "generate": t_generated - t_trained,
                    "score": t_scored - t_generated, "wall": t_scored - t_start},
        "train": train_info, "size": [frames, h, w], "scenario_info": s.to_dict(),
    }


def summarize_scores(scores: Sequence[dict[str, MetricValue]]) -> tuple[dict[str, float | None], dict[str, str]]:
    """Mean of each metric over videos (finite numbers only) and the skip message of non-numeric ones."""
    means: dict[str, float | None] = {}
    skipped: dict[str, str] = {}
    names = list(dict.fromkeys(n for s in scores for n in s))
    for name in names:
        values = [s[name] for s in scores if name in s]
        numbers = [float(v) for v in values if is_number(v)]
        texts = [v for v in values if isinstance(v, str) and not is_undefined(v)]
        if numbers:
            means[name] = float(np.mean(numbers))
        elif texts:
            skipped[name] = texts[0]
        else:
            means[name] = None  # NaN or "n/a: ..." everywhere (e.g. nothing to track)
    return means, skipped


def _write_reference_preview(output: str, s: Scenario, reference: np.ndarray | None, images: Any) -> str | None:
    from motiontune.data.video_io import write_image, write_video

    folder = Path(output) / "references"
    if reference is not None:
        path = folder / f"{s.id}.gif"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_video(reference, path, fps=8)
        return os.path.relpath(path, output)
    if images is not None and len(images):
        path = folder / f"{s.id}.png"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_image(np.asarray(images[0]), path)
        return os.path.relpath(path, output)
    return None


# ------------------------------------------------------------------------------------------
# Merging shards and writing the reports
# ------------------------------------------------------------------------------------------


def collect_results(dirs: Sequence[str | Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every cell result under the given output folders (first one wins for a cell found twice),
    each with ``_root`` (its folder), and the union of their manifests."""
    results: dict[str, dict[str, Any]] = {}
    manifest: dict[str, Any] = {"recipes": [], "cells": [], "scenarios": [], "metrics": []}
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise InputError(f"{d}: no such benchmark folder")
        m = read_manifest(root)
        for key in ("recipes", "cells", "metrics"):
            manifest[key] = list(dict.fromkeys([*manifest[key], *m.get(key, [])]))
        known = {s["id"] for s in manifest["scenarios"]}
        manifest["scenarios"] += [s for s in m.get("scenarios", []) if s["id"] not in known]
        for key in ("suite", "settings"):
            manifest.setdefault(key, m.get(key))
        for path in sorted(root.glob(f"cells/*/*/{RESULT_FILE}")):
            data = read_result(path)
            if data is not None and data["cell"] not in results:
                data["_root"] = str(root)
                results[data["cell"]] = data
    order = {c: k for k, c in enumerate(manifest["cells"])}
    ordered = sorted(results.values(), key=lambda r: (order.get(r["cell"], len(order)), r.get("index", 0), r["cell"]))
    return ordered, manifest


def merge_results(dirs: Sequence[str | Path], output: str | Path | None = None, scorer: LearnedScorer | None = None) -> dict[str, str]:
    """Gather the cells of ``dirs`` (shards) and write CSV, JSON, Markdown and HTML reports to
    ``output`` (default: the first folder). Returns {kind: path}. With a scorer holding I3D
    weights and ``fvd`` among the run's metrics, FVD is computed per recipe over all its videos."""
    from motiontune.evaluation.report import write_reports

    if not dirs:
        raise ConfigError("give at least one benchmark folder to merge")
    results, manifest = collect_results(dirs)
    if not results:
        raise InputError(f"no cell results (cells/*/*/{RESULT_FILE}) found in {', '.join(map(str, dirs))}")
    output = Path(output or dirs[0])
    found = {r["cell"] for r in results}
    missing = [c for c in manifest.get("cells", []) if c not in found]
    set_metrics: dict[str, dict[str, MetricValue]] = {}
    if scorer is not None and scorer.has("i3d") and "fvd" in manifest.get("metrics", []):
        set_metrics["fvd"] = recipe_fvd(results, scorer)
    return write_reports(results, output, manifest=manifest, missing=missing, set_metrics=set_metrics)


def recipe_fvd(results: Sequence[dict[str, Any]], scorer: LearnedScorer) -> dict[str, MetricValue]:
    """FVD of each recipe's generated videos against the scenarios' reference clips."""
    from motiontune.data.video_io import read_video

    out: dict[str, MetricValue] = {}
    recipes = list(dict.fromkeys(r["recipe"] for r in results))
    for recipe in recipes:
        if not scorer.has("i3d"):
            out[recipe] = scorer.fvd([], [])
            continue
        videos, refs = [], {}
        for r in results:
            if r["recipe"] != recipe:
                continue
            root = Path(r["_root"])
            for v in r["videos"]:
                mp4 = [f for f in v["files"] if f.endswith((".mp4", ".gif"))]
                if mp4:
                    videos.append(read_video(root / mp4[0]).frames)
            if r.get("reference") and r["reference"].endswith(".gif"):
                refs[r["scenario"]] = read_video(root / r["reference"]).frames
        out[recipe] = scorer.fvd(videos, list(refs.values()))
    return out


__all__ = [
    "BenchConfig",
    "BenchRun",
    "Cell",
    "NONE_RECIPE",
    "SCORERS",
    "check_metric_names",
    "collect_results",
    "default_metrics",
    "evaluate_video",
    "get_scorer",
    "match_reference",
    "merge_results",
    "parse_shard",
    "plan_cells",
    "recipe_applies",
    "split_cell_id",
    "read_manifest",
    "recipe_fvd",
    "register_scorer",
    "run_bench",
    "run_cell",
    "summarize_scores",
]
