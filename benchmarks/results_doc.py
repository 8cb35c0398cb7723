"""Writing one section of the results document (docs/RESULTS.md) without touching the others."""

from __future__ import annotations

import os


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
