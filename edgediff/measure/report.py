"""Human-readable output of measurements: Markdown tables and the plots of `edgediff bench` (matplotlib, lazily)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from edgediff.converters.parity import ungated_note
from edgediff.errors import InputError
from edgediff.format.files import atomic_path, write_text
from edgediff.measure.latency import FLOPS_PER_CYCLE, runtime_packages


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are str()-ed as given (format numbers before)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | Path | None, rows: list[dict]) -> None:
    """Write measurement rows as JSON atomically (nothing when path is None)."""
    if path is None:
        return

    write_text(Path(path), json.dumps(rows, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Write measurement rows as JSON Lines (one row per line) atomically."""

    write_text(Path(path), "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def append_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Append rows to a JSON Lines file (created with its folder if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSON Lines report (blank lines skipped)."""
    path = Path(path)
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read {path} as JSON Lines ({e})") from None


def _label(r: dict) -> str:
    """model / backend precision / device batch: three lines under a bar, joined by spaces in a legend."""
    return f"{r.get('model') or '–'}\n{r['backend']} {r['precision']}\n{r['device']} b{r['batch']}"


def _measured(rows: Sequence[dict]) -> list[dict]:
    return [r for r in rows if r.get("step") and not r.get("skipped")]


def latency_plot(rows: Sequence[dict], file):
    """Bars of p50 ms per network call for each measured row, with whiskers up to p90; PNG into `file`; the Figure."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    rows = _measured(rows)
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
    ax.set_xlabel("model, backend, precision, device, batch")
    ax.set_title("Per-step latency: p50 with p90 whisker (lower is better)")
    ax.legend(loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(file, format="png")
    return fig


def pareto_plot(rows: Sequence[dict], file):
    """Image latency vs FID-proxy for the rows that have one (else vs size in MB); marker area ∝ MB; PNG; the Figure."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    timed = [r for r in _measured(rows) if r.get("image_ms") is not None]
    measured = [r for r in timed if r.get("fid_proxy") is not None]
    fid = bool(measured)
    pts = measured or timed
    y = [r["fid_proxy"] if fid else r["size_mb"] for r in pts]
    fig = Figure(figsize=(8.8, 4.4), dpi=120)
    ax = fig.subplots()
    for i, (r, v) in enumerate(zip(pts, y, strict=True)):
        ax.scatter(r["image_ms"], v, s=40 + 20 * r["size_mb"], color=f"C{i % 10}", edgecolor="black", zorder=3,
                   alpha=0.85, label=f"{_label(r).replace(chr(10), ' ')}, {_steps(r)}, {r['size_mb']:.2f} MB")
    floor = next((r.get("fid_floor") for r in measured if r.get("fid_floor") is not None), None)
    if floor is not None:
        ax.axhline(floor, color="gray", linestyle="--", label=f"real-vs-real floor (N={measured[0]['fid_n']})")
    ax.set_xlabel("image ms per batch (each model's own sampler×steps)")
    ax.set_ylabel("FID-proxy (lower is better)" if fid else "model size, MB")
    ax.set_title("Quality vs latency (marker area ∝ MB; lower left is better)" if fid
                 else "Size vs image latency (FID-proxy not measured: y = MB)")
    ax.set_xlim(left=0, right=max((r["image_ms"] for r in pts), default=1) * 1.15)
    ax.set_ylim(bottom=0, top=max(y, default=1) * 1.25)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(file, format="png")
    return fig


def _steps(r: dict) -> str:
    s = r.get("sampler") or {}
    return f"{s.get('name')}×{s.get('steps')}" if s else "–"


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
    return (r.get("model"), r.get("backend"), r.get("precision"), r.get("device"), r.get("batch"))


def changes(new: list[dict], old: list[dict]) -> list[dict]:
    """Per new row: old and new ms/step p50 and the change in % (None where the old report lacks the row)."""
    before = {_key(r): r["step"]["p50"] for r in _measured(old)}
    out = []
    for r in _measured(new):
        was, now = before.get(_key(r)), r["step"]["p50"]
        out.append({"row": " ".join(str(k) for k in _key(r)), "old_p50": was, "new_p50": now,
                    "change_pct": 100 * (now - was) / was if was else None})
    return out


def format_changes(diff: list[dict], old_file) -> str:
    lines = [f"Change of ms/step p50 vs {old_file}:"]
    lines += [f"- {d['row']}: {_fmt(d['old_p50'])} → {_fmt(d['new_p50'])} ms "
              f"({_fmt(d['change_pct'], '+.1f')}%)" for d in diff]
    return "\n".join(lines)


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


def _fmt(v, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def bench_markdown(table: list[dict], host: dict, peak: float | None) -> str:
    """The bench table (FID-proxy column only when measured) plus a line describing the host and its fp32 peak."""
    fid = any(r.get("fid_proxy") is not None for r in table)
    headers = ["model", "backend", "precision", "device", "batch", "threads", "load ms", "ms/step p50", "ms/step p90",
               "sampler", "image ms", "sampler %", "MB", "peak RSS MB", "parity dB", *(["FID-proxy"] if fid else []),
               "GFLOP/s", "speed-up/step", "speed-up/image"]
    notes = [f"- {r.get('model') or '–'} on {r['backend']}: {n}" for r in table
             if (n := ungated_note(r["precision"], r.get("parity_db")))]
    notes_text = "\n".join(notes) + "\n\n" if notes else ""
    return markdown_table(headers, [_cells(r, fid) for r in table]) + "\n\n" + notes_text + host_line(host, table, peak)


def _cells(r: dict, fid: bool) -> list:
    head = [r.get("model") or "–", r["backend"], r["precision"], r["device"], r["batch"]]
    if r.get("skipped"):
        return head + ["–", "–", f"skipped: {r['skipped']}", "–", "–", "–", "–", _fmt(r["size_mb"]), "–",
                       _fmt(r.get("parity_db"), ".1f"), *(["–"] if fid else []), "–", "–", "–"]
    return head + [_fmt(r.get("threads"), "d"), _fmt(r["load_ms"], ".0f"), _fmt(r["step"]["p50"]),
                   _fmt(r["step"]["p90"]), _steps(r), _fmt(r["image_ms"], ".1f"),
                   _fmt(_pct(r["sampler_overhead_frac"]), ".1f"), _fmt(r["size_mb"]), _fmt(r.get("peak_rss_mb"), ".0f"),
                   _fmt(r["parity_db"], ".1f"), *([_fmt(r.get("fid_proxy"))] if fid else []),
                   _fmt(r["gflops_per_s"], ".1f"), _times(r.get("speedup")), _times(r.get("image_speedup"))]


def _times(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def host_line(h: dict, table: list[dict], peak: float | None) -> str:
    """One sentence: host, runtime versions, the estimated fp32 peak and what the image/speed-up columns mean."""

    est = (f"estimated fp32 peak {peak:.0f} GFLOP/s (estimate: {h['cores']} cores × {h['mhz'] / 1e3:.2f} GHz × "
           f"{FLOPS_PER_CYCLE[h['simd']]} FLOPs/cycle, {h['simd']} FMA)") if peak else "fp32 peak unknown"
    fid = next((r for r in table if r.get("fid_proxy") is not None), None)
    fid_text = (f" FID-proxy on {fid['fid_n']} samples per row (real-vs-real floor {fid['fid_floor']:.2f})."
                if fid else "")
    base = next((r.get("baseline") for r in table if r.get("baseline")), None)
    versions = ", ".join(f"{k} {h[k]}" for k in ("torch", *runtime_packages()) if h.get(k))
    return (f"Host: {h['cpu']}, {h['cores']} cores, {h['os']}, python {h['python']}, {versions}; {est}. "
            f"Image = one batch with the model's recommended sampler (sampler column); sampler % = host time "
            f"outside the network calls; speed-up/step = ms/step against the same model's eager fp32 row, "
            f"speed-up/image = ms per image against {base or 'an eager fp32 row (none here)'}; peak RSS measured "
            f"in a fresh subprocess per row (– when measured in-process).{fid_text}")


def write_bench(table: list[dict], out_dir: Path, *, host: dict, peak: float | None, compare=None) -> None:
    """Write report.json, report.jsonl, report.md, latency.png and pareto.png into `out_dir`, each atomically."""

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "report.json", table)
    write_jsonl(out_dir / "report.jsonl", table)
    text = bench_markdown(table, host, peak)
    if compare is not None:
        text += "\n\n" + format_changes(changes(table, read_rows(compare)), compare)
    write_text(out_dir / "report.md", text + "\n")
    for name, plot in (("latency.png", latency_plot), ("pareto.png", pareto_plot)):
        with atomic_path(out_dir / name) as tmp:
            plot(table, tmp)
