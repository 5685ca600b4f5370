"""Human-readable output of measurements: Markdown tables (plots arrive with `edgediff bench`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are str()-ed as given (format numbers before)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | Path | None, rows: list[dict]) -> None:
    """Write measurement rows as JSON atomically (nothing when path is None)."""
    if path is None:
        return
    from .checkpoint import write_text

    write_text(Path(path), json.dumps(rows, indent=2) + "\n")
