"""The two markdown tables of benchmarks/sd_sizes.py (per component × backend × precision; per image), built from
the plan and the stored cell results; every cell is a figure or a one-line reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sd_sizes_build import COMPONENTS
from sd_sizes_plan import Cell

from edgediff.converters.parity import psnr_db
from edgediff.measure.report import markdown_table

COMPONENT_HEAD = ["model", "res", "component", "params M", "backend", "precision", "convert s", "peak RSS GB",
                  "artifact MB", "ms/call", "PSNR dB vs eager", "note"]
IMAGE_HEAD = ["model", "res", "decoder", "backend", "precision", "s/image 1 step", "s/image 4 steps",
              "s/image 20 steps (CFG 7.5)", "note"]


def status(cell: Cell, results: dict) -> str | None:
    """None when the cell holds a figure, else the one-line reason it does not."""
    if cell.reason:
        return cell.reason
    r = results.get(cell.key)
    if r is None:
        missing = [n for n in cell.needs if results.get(n, {}).get("status") != "ok"]
        if missing:
            dep = results.get(missing[0])
            why = f"{dep['status']}: {dep.get('reason', '')}" if dep else "not run"
            return f"not run: {missing[0].split('/', 1)[1]} {why}"[:200]
        return "not run yet"
    if r["status"] != "ok":
        return f"{r['status']}: {r.get('reason', '')}"[:160]
    return None


def _num(v, digits: int = 2) -> str:
    if v is None:
        return "—"
    v = float(v)
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.{digits}f}"


def fill_psnr(cells: list[Cell], results: dict) -> None:
    """Store each call cell's PSNR against eager in its result while both outputs are on disk, so the run record
    keeps it after the (multi-GB, git-ignored) work folder is gone."""
    for cell in cells:
        r = results.get(cell.key, {})
        if cell.spec["kind"] != "call" or cell.spec["backend"] == "eager" or r.get("status") != "ok":
            continue
        out = Path(cell.spec["out"])
        ref = out.with_name("eager-fp32.npy")
        if ref.is_file() and out.is_file():
            a, b = np.load(ref, allow_pickle=False), np.load(out, allow_pickle=False)
            if a.size == b.size:
                r["psnr_db"] = round(float(psnr_db(a, b.reshape(a.shape))), 2)


def _psnr(cell: Cell, results: dict) -> str:
    if cell.spec["backend"] == "eager":
        return "ref"
    return _num(results.get(cell.key, {}).get("psnr_db"), 1)


def _conversion(cell: Cell, results: dict) -> tuple[str, str, str, str, str]:
    """(precision, convert s, peak RSS GB, artifact MB, note) of one component row."""
    backend, precision, comp = (cell.spec[k] for k in ("backend", "precision", "component"))
    call = results.get(cell.key, {})
    if backend == "eager":
        return "fp32", "—", _num(call.get("peak_rss_gb")), "—", ""
    if backend == "compile":
        return "fp32", _num(call.get("first_call_s")), _num(call.get("peak_rss_gb")), "—", \
            "convert s: first call (torch.compile)"
    key = next((n for n in cell.needs if "/convert/" in n), None)
    conv = results.get(key, {}) if key else {}
    if conv.get("status") != "ok":
        return precision, "—", "—", "—", ""
    part = conv["components"].get("vae_decoder" if comp == "taesd_decoder" else comp, {})
    mb = _num(part["bytes"] / 1e6) if "bytes" in part else "—"
    if backend == "optimum":
        return precision, _num(conv["wall_s"]), _num(conv["peak_rss_gb"]), mb, "convert s / RSS: whole pipeline"
    return part.get("precision", precision), _num(part.get("convert_s")), _num(part.get("peak_rss_gb")), mb, \
        f"parity gate {_num(part.get('parity_db'), 1)} dB"


def component_rows(cells: list[Cell], results: dict) -> list[list[str]]:
    """One row per call cell, ordered as planned."""
    rows = []
    for cell in cells:
        if cell.spec["kind"] != "call":
            continue
        size, res, comp = cell.spec["size"], cell.spec["res"], cell.spec["component"]
        build = results.get(f"{size}@{res}/build", {})
        params = build.get("params", {}).get(comp)
        precision, conv_s, rss, mb, note = _conversion(cell, results)
        why = status(cell, results)
        ms = "—" if why else _num(results[cell.key]["ms"])
        rows.append([size, str(res), comp, _num(None if params is None else params / 1e6), cell.spec["backend"],
                     precision, conv_s, rss, mb, ms, "—" if why else _psnr(cell, results), why or note])
    return rows


def image_rows(cells: list[Cell], results: dict) -> list[list[str]]:
    """One row per (model, res, decoder, backend, precision), a column per step count."""
    groups: dict[tuple, dict[int, Cell]] = {}
    for cell in cells:
        if cell.spec["kind"] == "image":
            s = cell.spec
            groups.setdefault((s["size"], s["res"], s["decoder"], s["backend"], s["precision"]), {})[s["steps"]] = cell
    rows = []
    for (size, res, decoder, backend, precision), by_steps in groups.items():
        figures, reasons = [], []
        for n in (1, 4, 20):
            cell = by_steps.get(n)
            why = "not asked" if cell is None else status(cell, results)
            figures.append("—" if why else _num(results[cell.key]["s"]))
            if why and why != "not asked" and why not in reasons:
                reasons.append(why)
        rows.append([size, str(res), decoder, backend, precision, *figures, "; ".join(reasons)])
    return rows


def render(cells: list[Cell], results: dict, meta: dict) -> str:
    """Both tables with a header saying what ran where and how long the benchmark took."""
    host = meta.get("host", {})
    head = (f"Random-weight SD-family components (configs: benchmarks/sd_configs/, widths ÷ {meta.get('scale')}); "
            f"{host.get('cpu', '?')}, {host.get('cores', '?')} cores, {meta.get('threads')} threads; "
            f"benchmark runtime {meta.get('runtime_s', 0):.0f} s (sum of cell wall times). ms/call: min of medians "
            f"on shared inputs; PSNR against diffusers eager on the same inputs. Components: {', '.join(COMPONENTS)}.")
    return "\n\n".join([head, markdown_table(COMPONENT_HEAD, component_rows(cells, results)),
                        markdown_table(IMAGE_HEAD, image_rows(cells, results))]) + "\n"
