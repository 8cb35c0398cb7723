"""Benchmark reports: CSV (one row per generated video), JSON, a Markdown summary table and an
HTML page with the videos side by side and a bar plot per metric (PNG, matplotlib Agg)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from motiontune.evaluation.registry import METRICS

SUMMARY_TIMES = ("train_seconds", "wall_seconds")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metric_names(results: Sequence[dict[str, Any]]) -> list[str]:
    """Metrics that were computed (numbers, or NaN / None / "n/a: ..." where undefined, e.g. nothing to track), in
    registry order, then extra scorers' metrics in order of appearance."""
    seen = list(dict.fromkeys(n for r in results for v in r["videos"] for n, x in v["metrics"].items()
                              if not isinstance(x, str) or x.startswith("n/a")))
    registered = [n for n in METRICS if n in seen]
    return registered + [n for n in seen if n not in METRICS]


def skipped_metrics(results: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Metrics that never produced a number, with their (first) skip message."""
    numeric = set(metric_names(results))
    out: dict[str, str] = {}
    for r in results:
        for v in r["videos"]:
            for name, value in v["metrics"].items():
                if isinstance(value, str) and name not in numeric:
                    out.setdefault(name, value)
    return out


def report_skipped(results: Sequence[dict[str, Any]], set_metrics: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Skipped metrics of a report: per-video ones that never gave a number, except set-level
    metrics computed per recipe; set-level metrics that gave no number either."""
    skipped = skipped_metrics(results)
    for name, values in set_metrics.items():
        if any(_is_number(v) for v in values.values()):
            skipped.pop(name, None)
        else:
            texts = [v for v in values.values() if isinstance(v, str)]
            if texts:
                skipped[name] = texts[0]
    return skipped


def recipe_order(results: Sequence[dict[str, Any]], manifest: dict[str, Any] | None = None) -> list[str]:
    present = list(dict.fromkeys(r["recipe"] for r in results))
    listed = [r for r in (manifest or {}).get("recipes", []) if r in present]
    return listed + [r for r in present if r not in listed]


def summarize(results: Sequence[dict[str, Any]], manifest: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per recipe: cells, videos, the mean (and standard error) of each metric over its videos,
    and the mean train / wall seconds per cell."""
    names = metric_names(results)
    summary: dict[str, dict[str, Any]] = {}
    for recipe in recipe_order(results, manifest):
        rows = [r for r in results if r["recipe"] == recipe]
        videos = [v for r in rows for v in r["videos"]]
        entry: dict[str, Any] = {"cells": len(rows), "videos": len(videos), "metrics": {}, "stderr": {}}
        for name in names:
            values = [float(v["metrics"][name]) for v in videos if _is_number(v["metrics"].get(name))]
            entry["metrics"][name] = float(np.mean(values)) if values else None
            entry["stderr"][name] = float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
        entry["train_seconds"] = float(np.mean([r["seconds"]["train"] for r in rows]))
        entry["wall_seconds"] = float(np.mean([r["seconds"]["wall"] for r in rows]))
        entry["total_seconds"] = float(np.sum([r["seconds"]["wall"] for r in rows]))
        summary[recipe] = entry
    return summary


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return f"{value:.4g}"


def _arrow(name: str) -> str:
    info = METRICS.get(name)
    if info is None:
        return ""
    return " ↑" if info.higher_is_better else " ↓"


def _rel(path: str | Path, start: str | Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def write_csv(results: Sequence[dict[str, Any]], path: Path) -> None:
    """One row per generated video: cell, prompt, files, times, then every metric (blank when skipped)."""
    names = metric_names(results)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["scenario", "group", "recipe", "prompt_index", "prompt", "video",
                         "train_seconds", "generate_seconds", "wall_seconds", *names])
        for r in results:
            root = Path(r["_root"])
            for k, v in enumerate(r["videos"]):
                video = _rel(root / v["files"][0], path.parent) if v["files"] else ""
                values = [v["metrics"].get(n) for n in names]
                writer.writerow([r["scenario"], r.get("group", ""), r["recipe"], k, v["prompt"], video,
                                 f"{r['seconds']['train']:.3f}", f"{r['seconds']['generate']:.3f}",
                                 f"{r['seconds']['wall']:.3f}",
                                 *[repr(float(x)) if _is_number(x) else "" for x in values]])


def summary_table(summary: dict[str, dict[str, Any]], names: Sequence[str], set_metrics: dict[str, dict[str, Any]]) -> list[list[str]]:
    header = ["recipe", "cells", "videos", *[f"{n}{_arrow(n)}" for n in names], *[f"{n}{_arrow(n)}" for n in set_metrics],
              "train s/cell", "wall s/cell"]
    rows = [header]
    for recipe, entry in summary.items():
        rows.append([recipe, str(entry["cells"]), str(entry["videos"]),
                     *[_fmt(entry["metrics"][n]) for n in names],
                     *[_fmt(_number_or_none(set_metrics[n].get(recipe))) for n in set_metrics],
                     f"{entry['train_seconds']:.1f}", f"{entry['wall_seconds']:.1f}"])
    return rows


def _number_or_none(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def write_markdown(results: Sequence[dict[str, Any]], summary: dict[str, dict[str, Any]], path: Path,
                   manifest: dict[str, Any], missing: Sequence[str], set_metrics: dict[str, dict[str, Any]]) -> None:
    names = metric_names(results)
    scenarios = list(dict.fromkeys(r["scenario"] for r in results))
    settings = manifest.get("settings") or {}
    lines = [f"# Benchmark: {manifest.get('suite', '?')}", ""]
    lines.append(f"{len(scenarios)} scenario(s), {len(results)} cell(s); backbone `{settings.get('backbone', '?')}`, "
                 f"{settings.get('train_steps', '?')} training steps, sampling steps {settings.get('steps') or 'default'}, "
                 f"seed {settings.get('seed', '?')}.")
    lines += ["", "Mean of each metric over the generated videos of each recipe (↑ higher is better, ↓ lower); "
              "times are per cell (train, and train + generate + score).", ""]
    shown_sets = {n: v for n, v in set_metrics.items() if any(_is_number(x) for x in v.values())}
    table = summary_table(summary, names, shown_sets)
    lines.append("| " + " | ".join(table[0]) + " |")
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(table[0]))) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    groups = sorted({r.get("group", "") for r in results} - {""})
    if len(groups) > 1 and names:
        lines += ["", "## By group", ""]
        head = ["group", "recipe", *names]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---", "---", *["---:"] * len(names)]) + "|")
        for group in groups:
            sub = summarize([r for r in results if r.get("group", "") == group], manifest)
            for recipe, entry in sub.items():
                lines.append("| " + " | ".join([group, recipe, *[_fmt(entry["metrics"].get(n)) for n in names]]) + " |")
    skipped = report_skipped(results, set_metrics)
    if skipped:
        lines += ["", "## Skipped metrics", ""]
        lines += [f"- `{name}`: {message}" for name, message in skipped.items()]
    if missing:
        lines += ["", f"## Missing cells ({len(missing)})", "", *[f"- {c}" for c in missing]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_plots(summary: dict[str, dict[str, Any]], names: Sequence[str], folder: Path) -> dict[str, Path]:
    """A bar plot per metric (per-recipe mean, standard-error bars) as PNG; matplotlib's Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    recipes = list(summary)
    for name in names:
        means = [summary[r]["metrics"].get(name) for r in recipes]
        if all(m is None for m in means):
            continue
        fig = Figure(figsize=(max(3.0, 0.9 * len(recipes) + 1.5), 2.8), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        xs = np.arange(len(recipes))
        ax.bar(xs, [m if m is not None else 0.0 for m in means],
               yerr=[summary[r]["stderr"].get(name, 0.0) for r in recipes], color="#4c72b0", capsize=3)
        ax.set_xticks(xs)
        ax.set_xticklabels(recipes, rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{name}{_arrow(name)}", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        fig.tight_layout()
        path = folder / f"{name}.png"
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        path.write_bytes(buffer.getvalue())
        out[name] = path
    return out


_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:0.6em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:center;vertical-align:top;font-size:13px}
th{background:#f3f3f3}img.v,video.v{width:160px;image-rendering:pixelated}.m{font-size:11px;color:#555;text-align:left}
.plots img{margin:4px;border:1px solid #eee}.skip{color:#888}"""


def _media(src: str) -> str:
    src_e = html.escape(src, quote=True)
    if src.lower().endswith((".mp4", ".webm", ".mov")):
        return f'<video class="v" src="{src_e}" autoplay loop muted playsinline></video>'
    return f'<img class="v" src="{src_e}" alt="{src_e}">'


def write_html(results: Sequence[dict[str, Any]], summary: dict[str, dict[str, Any]], path: Path, manifest: dict[str, Any],
               plots: dict[str, Path], missing: Sequence[str], set_metrics: dict[str, dict[str, Any]]) -> None:
    names = metric_names(results)
    recipes = list(summary)
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
             f"<title>Benchmark: {esc(str(manifest.get('suite', '')))}</title><style>{_CSS}</style></head><body>",
             f"<h1>Benchmark: {esc(str(manifest.get('suite', '')))}</h1>", "<h2>Summary</h2><table>"]
    shown_sets = {n: v for n, v in set_metrics.items() if any(_is_number(x) for x in v.values())}
    table = summary_table(summary, names, shown_sets)
    parts.append("<tr>" + "".join(f"<th>{esc(c)}</th>" for c in table[0]) + "</tr>")
    parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table[1:]]
    parts.append("</table>")
    skipped = report_skipped(results, set_metrics)
    if skipped:
        parts.append("<p class='skip'>Skipped: " + "; ".join(f"<code>{esc(n)}</code> ({esc(m)})" for n, m in skipped.items()) + "</p>")
    if missing:
        parts.append(f"<p class='skip'>Missing cells: {esc(', '.join(missing))}</p>")
    if plots:
        parts.append("<h2>Metrics</h2><div class='plots'>")
        parts += [f'<img src="{esc(_rel(p, path.parent), quote=True)}" alt="{esc(n)}">' for n, p in plots.items()]
        parts.append("</div>")
    parts.append("<h2>Videos</h2>")
    by_cell = {(r["scenario"], r["recipe"]): r for r in results}
    for scenario in dict.fromkeys(r["scenario"] for r in results):
        cells = {rec: by_cell.get((scenario, rec)) for rec in recipes}
        first = next(c for c in cells.values() if c is not None)
        group = f" <small>({esc(first.get('group', ''))})</small>" if first.get("group") else ""
        parts.append(f"<h3>{esc(scenario)}{group}</h3><p class='m'>reference caption: {esc(first.get('caption', ''))}</p><table>")
        parts.append("<tr><th>prompt</th><th>reference</th>" + "".join(f"<th>{esc(r)}</th>" for r in recipes) + "</tr>")
        prompts = [v["prompt"] for v in first["videos"]]
        ref = next((c.get("reference") for c in cells.values() if c and c.get("reference")), None)
        ref_cell = _media(_rel(Path(first["_root"]) / ref, path.parent)) if ref else ""
        for k, prompt in enumerate(prompts):
            row = [f"<td class='m'>{esc(prompt)}</td>", f"<td>{ref_cell}</td>"]
            for rec in recipes:
                cell = cells.get(rec)
                if cell is None or k >= len(cell["videos"]):
                    row.append("<td class='skip'>missing</td>")
                    continue
                v = cell["videos"][k]
                files = v["files"]
                shown = next((f for f in files if f.endswith(".gif")), files[0] if files else None)
                media = _media(_rel(Path(cell["_root"]) / shown, path.parent)) if shown else ""
                scores = "<br>".join(f"{esc(n)}: {_fmt(v['metrics'][n])}" for n in names if _is_number(v["metrics"].get(n)))
                row.append(f"<td>{media}<div class='m'>{scores}</div></td>")
            parts.append("<tr>" + "".join(row) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def write_reports(results: Sequence[dict[str, Any]], output: str | Path, manifest: dict[str, Any] | None = None,
                  missing: Sequence[str] = (), set_metrics: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """Write results.csv, results.json, summary.md, report.html and plots/*.png into ``output``."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    manifest = manifest or {}
    set_metrics = set_metrics or {}
    summary = summarize(results, manifest)
    names = metric_names(results)
    paths = {"csv": output / "results.csv", "json": output / "results.json", "markdown": output / "summary.md",
             "html": output / "report.html"}
    write_csv(results, paths["csv"])
    cells = [{k: v for k, v in r.items() if k != "_root"} | {"root": _rel(r["_root"], output)} for r in results]
    data = {"suite": manifest.get("suite"), "settings": manifest.get("settings"), "recipes": list(summary),
            "metrics": names, "skipped": report_skipped(results, set_metrics), "missing": list(missing),
            "summary": summary, "set_metrics": set_metrics, "cells": cells}
    paths["json"].write_text(json.dumps(_safe(data), indent=2) + "\n", encoding="utf-8")
    write_markdown(results, summary, paths["markdown"], manifest, missing, set_metrics)
    plots = write_plots(summary, names, output / "plots")
    write_html(results, summary, paths["html"], manifest, plots, missing, set_metrics)
    return {k: str(v) for k, v in paths.items()} | {f"plot:{n}": str(p) for n, p in plots.items()}


def _safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    return value


__all__ = ["metric_names", "recipe_order", "report_skipped", "skipped_metrics", "summarize", "write_csv", "write_html",
           "write_markdown", "write_plots", "write_reports"]
