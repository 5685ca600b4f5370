"""Human-readable output of measurements: Markdown tables and the plots of `edgediff bench` (matplotlib, lazily)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError


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


def _label(r: dict) -> str:
    return f"{r['backend']} {r['precision']}\n{r['device']} b{r['batch']}"


def latency_plot(rows: Sequence[dict], file) -> None:
    """Bars of p50 ms per network call for each row, with whiskers up to p90; PNG into `file`."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    p50 = [r["step"]["p50"] for r in rows]
    p90 = [r["step"]["p90"] for r in rows]
    fig = Figure(figsize=(max(6.4, 1.6 * len(rows)), 4.2), dpi=120)
    ax = fig.subplots()
    colors = [f"C{i % 10}" for i in range(len(rows))]
    above = [b - a for a, b in zip(p50, p90, strict=True)]
    bars = ax.bar(range(len(rows)), p50, color=colors, yerr=[[0] * len(rows), above], capsize=6,
                  label="p50 (bar), p90 (whisker)")
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in p50], label_type="center", color="white", fontsize=9)
    ax.set_xticks(range(len(rows)), [_label(r) for r in rows], fontsize=9)
    ax.set_ylabel("ms per network call (step)")
    ax.set_xlabel("backend, precision, device, batch")
    ax.set_title("Per-step latency: p50 with p90 whisker (lower is better)")
    ax.legend(loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(file, format="png")


def pareto_plot(rows: Sequence[dict], file) -> None:
    """Image latency vs FID-proxy where every row has one, else vs size in MB; PNG into `file`."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    fid = all(r.get("fid_proxy") is not None for r in rows)
    y = [r["fid_proxy"] if fid else r["size_mb"] for r in rows]
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.subplots()
    for i, (r, v) in enumerate(zip(rows, y, strict=True)):
        ax.scatter(r["image_ms"], v, s=40 + 20 * r["size_mb"], color=f"C{i % 10}", edgecolor="black", zorder=3,
                   label=_label(r).replace("\n", " "))
    ax.set_xlabel(f"image latency, ms (one batch, {rows[0]['sampler']['steps']} steps)" if rows else "image ms")
    ax.set_ylabel("FID-proxy (lower is better)" if fid else "model size, MB")
    ax.set_title("Quality vs latency" if fid else "Size vs image latency (FID-proxy not measured: y = MB)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0, top=max(y, default=1) * 1.25)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(file, format="png")


def read_rows(file) -> list[dict]:
    file = Path(file)
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {file} as an edgediff report.json ({e})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) and "step" in r for r in data):
        raise InputError(f"{file} is not an edgediff report.json (expected a list of rows with 'step')")
    return data


def _key(r: dict) -> tuple:
    return (r.get("backend"), r.get("precision"), r.get("device"), r.get("batch"))


def changes(new: list[dict], old: list[dict]) -> list[dict]:
    """Per new row: old and new ms/step p50 and the change in % (None where the old report lacks the row)."""
    before = {_key(r): r["step"]["p50"] for r in old}
    out = []
    for r in new:
        was, now = before.get(_key(r)), r["step"]["p50"]
        out.append({"row": " ".join(str(k) for k in _key(r)), "old_p50": was, "new_p50": now,
                    "change_pct": 100 * (now - was) / was if was else None})
    return out


def format_changes(diff: list[dict], old_file) -> str:
    lines = [f"Change of ms/step p50 vs {old_file}:"]
    lines += [f"- {d['row']}: {_num(d['old_p50'])} → {_num(d['new_p50'])} ms "
              f"({_num(d['change_pct'], '+.1f')}%)" for d in diff]
    return "\n".join(lines)


def _num(v, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)
