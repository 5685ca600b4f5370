"""`edgediff compress-report`: every compressed variant of a model beside the original, as (FID-proxy, ms/step, MB).

Builds (or reuses, by content key) the artifacts of each model × (backend, precision), with int8 calibrated on
sampling trajectories and, for comparison, on random inputs; then runs `edgediff bench` over all of them and writes
`compression.md` with the ratios people decide by: speed-up against the same backend's fp32 artifact and against
the first model's eager fp32, size and FID-proxy against the first model.
"""

from __future__ import annotations

from pathlib import Path

from edgediff.converters import base
from edgediff.converters.convert import convert_model
from edgediff.errors import InputError
from edgediff.format import model_dir
from edgediff.format.files import write_text
from edgediff.measure import bench
from edgediff.measure.report import markdown_table
from edgediff.models import checkpoint


def default_variants() -> tuple[tuple[str, str], ...]:
    """fp32 and the `compressed` precisions of every registered backend that runs on this machine."""
    out = []
    for name in base.convertible():
        be = base.get(name)
        if be.compressed and be.unavailable() is None and base.installed(be):
            out += [(name, "fp32"), *((name, q) for q in be.compressed)]
    return tuple(out)


def build(models, work: Path, *, variants=None, naive: bool = True, progress: bool = True) -> list[str]:
    """Convert every model × variant into `work/<model>-<backend>-<precision>[-random]`; return bench targets."""

    jobs = []
    for model in models:
        jobs.append((model, None, None, None))
        for backend, precision in (default_variants() if variants is None else variants):
            jobs.append((model, backend, precision, "trajectory"))
            if naive and precision == "int8" and model == models[0]:
                jobs.append((model, backend, precision, "random"))
    targets = []
    for model, backend, precision, calib in _progress(jobs, progress):
        if backend is None:
            targets.append(str(checkpoint.resolve(model)))
            continue
        name = checkpoint.load(model, weights=False).meta.get("name") or Path(str(model)).name
        out = Path(work) / f"{name}-{backend}-{precision}{'-random' if calib == 'random' else ''}"
        convert_model(model, backend, out, precision=precision, calibration=calib)
        targets.append(str(out))
    return targets


def _progress(items, enabled: bool):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="convert", unit="artifact")


def report(models, out: Path, *, work: Path | None = None, fid: int = 1000, threads: int | None = None,
           naive: bool = True, progress: bool = True) -> Path:
    """Build the variants, bench them (with FID-proxy on `fid` samples) and write out/compression.md."""

    if not models:
        raise InputError("compress-report needs at least one model (e.g. default and a pruned model dir)")
    folders = [model_dir.prompt_model(m) for m in models]
    if any(folders):
        if len(models) != 1:
            raise InputError("compress-report takes one text-to-image folder at a time")
        from edgediff.measure import compression_pipeline

        return compression_pipeline.report(folders[0], Path(out), work=work, threads=threads, progress=progress)
    out = Path(out)
    targets = build(list(models), Path(work or out / "artifacts"), naive=naive, progress=progress)
    records = bench.run(targets, out_dir=out, fid=fid, threads=threads, progress=progress)

    write_text(out / "compression.md", table(records, targets))
    return out / "compression.md"


def table(records, targets: list[str]) -> str:
    """Markdown: one row per variant with params, GFLOPs, MB, ms/step, image ms, FID-proxy and the ratios."""

    by_path = {str(Path(r.path).resolve()): r for r in records}
    rows = [by_path[str(Path(t).resolve())] for t in targets if str(Path(t).resolve()) in by_path]
    if not rows:
        raise InputError("no bench rows matched the compressed variants")
    ref = rows[0]  # the first model, eager fp32
    fp32 = {(r.model, r.backend): r for r in rows if r.precision == "fp32"}
    out = []
    for r in rows:
        same = fp32.get((r.model, r.backend))
        p50 = r.step["p50"]
        out.append([r.model or "", r.backend, Path(r.path).name if r.backend != "eager" else "fp32",
                    _f(r.gflops_per_step, 3), f"{r.size_mb:.2f}", _f(p50, 2), _f(r.image_ms, 1),
                    _f(r.fid_proxy, 2), _ratio(same.step["p50"] if same else None, p50),
                    _ratio(ref.step["p50"], p50), _ratio(r.fid_proxy, ref.fid_proxy)])
    head = ["model", "backend", "variant", "GFLOPs/step", "MB", "ms/step p50", "image ms", "FID-proxy",
            "× vs same backend fp32", "× vs first model eager", "FID ÷ first model's"]
    floor = next((r.fid_floor for r in rows if r.fid_floor is not None), None)
    note = f"\nFID-proxy real-vs-real floor at this N: {floor:.2f}.\n" if floor is not None else "\n"
    return markdown_table(head, out) + note


def _f(v, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _ratio(a, b) -> str:
    return "–" if a is None or b is None or not b else f"{a / b:.2f}"
