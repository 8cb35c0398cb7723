"""Writing one section of the results document (docs/RESULTS.md) without touching the others."""

from __future__ import annotations

import os
import shlex
import sys


def command_line(script: str, argv: list[str] | None = None) -> str:
    """How a benchmark was run, for the document: ``python benchmarks/NAME.py ARGS`` with its
    arguments (``argv``, else the process's own) quoted as a shell would need them."""
    args = list(argv) if argv is not None else sys.argv[1:]
    return f"python benchmarks/{os.path.basename(script)} " + shlex.join(args)


def replace_section(path: str, heading: str, body: str) -> None:
    """Replace the section that starts with ``heading`` (up to the next ``## `` heading), or append it."""
    text = open(path, encoding="utf-8").read() if os.path.isfile(path) else "# Results\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    block = f"{heading}\n\n{body.rstrip()}\n\n"
    if start is None:
        new = text.rstrip() + "\n\n" + block
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + block + "".join(lines[end:])
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(new)
    os.replace(tmp, path)


def upsert_row(path: str, heading: str, intro: str, header: list[str], row: list[str]) -> None:
    """Keep a Markdown table under ``heading`` with one row per first cell: ``row`` replaces the row
    with the same first cell (or is added), rows are sorted by their first cell, ``intro`` is
    rewritten above the table."""
    rows: dict[str, str] = {}
    if os.path.isfile(path):
        lines = open(path, encoding="utf-8").read().splitlines()
        start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
        if start is not None:
            for line in lines[start + 1:]:
                if line.startswith("## "):
                    break
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if line.startswith("|") and cells[0] not in (header[0], "") and not set(cells[0]) <= set("-"):
                    rows[cells[0]] = line.strip()
    rows[row[0]] = "| " + " | ".join(row) + " |"
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [rows[k] for k in sorted(rows)]
    replace_section(path, heading, intro.rstrip() + "\n\n" + "\n".join(table) + "\n")
