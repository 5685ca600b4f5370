"""`edgediff bench`: load, first-call, per-step and end-to-end image latency of models and artifacts, as a report.

Protocol per target (`target.measure_target`): cold load (+ compile, + hash check for artifacts) as the median of
3 fresh loads, the first inference after the last load, steady per-step latency (`warmup` untimed, `iters` timed),
and end-to-end latency of one image batch with the target's recommended sampler/steps/guidance; the time inside the
runner is counted apart, so the host-side sampler overhead (numpy) is reported separately. Each target runs in a
fresh subprocess (`bench_worker`) by default, so its peak RSS is its own; `fid=N` adds FID-proxy on N samples. A
target that cannot run on this machine (Core ML off macOS) is a row saying why, and the report is still written.
"""

from __future__ import annotations

from pathlib import Path

from edgediff.converters import base
from edgediff.errors import EdgediffError, InputError
from edgediff.format import artifact, model_dir
from edgediff.format.files import file_sha256
from edgediff.measure import target_pipeline
from edgediff.measure.bench_worker import measure_in_child
from edgediff.measure.latency import host, peak_gflops
from edgediff.measure.record import Record
from edgediff.measure.report import read_rows, write_bench
from edgediff.measure.target import describe, measure_target, skipped


def baseline_model(targets: list) -> str | None:
    """The model dir behind the targets: a model-dir target, else the artifacts' shipped source model."""
    if any(target_pipeline.is_pipeline(t) for t in targets):
        return None  # a text-to-image folder is benched as a target of its own (its eager rows)
    for target in targets:
        if not (Path(target) / artifact.ARTIFACT_FILE).is_file():
            return None  # a model dir is itself a target (and the eager baseline)
    for target in targets:
        src = artifact.read(target).source
        try:
            path = model_dir.resolve(src.get("model", ""))
        except (EdgediffError, TypeError):
            continue
        if file_sha256(path / model_dir.WEIGHTS_FILE) == src.get("checkpoint_sha256"):
            return str(path)
    return None


def run(targets, *, out_dir, device: str | None = None, threads: int | None = None, warmup: int = 3,
        iters: int = 20, progress: bool = True, compare=None, fid: int = 0, isolate: bool = True) -> list[Record]:
    """Benchmark every target (+ the eager fp32 baseline); write report.json/.jsonl/.md, latency.png, pareto.png."""
    targets = [str(t) for t in targets]
    if not targets:
        raise InputError("bench needs at least one model or artifact directory")
    if fid and fid < 2:
        raise InputError(f"--fid needs at least 2 samples, got {fid}")
    backends = {t: "eager" if target_pipeline.is_pipeline(t) else describe(t)["backend"] for t in targets}
    for t in targets:  # every target is checked before anything runs
        if target_pipeline.is_pipeline(t):
            target_pipeline.describe(t)
    if compare is not None:
        read_rows(compare)
    first = baseline_model(targets)
    todo = ([first] if first else []) + targets
    if first:
        backends[first] = "eager"
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = todo = tqdm(todo, desc="bench", unit="target")
    records = []
    for tg in todo:
        if bar is not None:
            bar.set_postfix_str(f"{backends[tg]} {Path(tg).name}")
        kw = {"device": device if base.get(backends[tg]).takes_device else None, "threads": threads,
              "warmup": warmup, "iters": iters}
        if target_pipeline.is_pipeline(tg):  # one row per component + the prompt → image row
            kw["device"] = device
            rows_ = target_pipeline.skipped(tg, device=device)
            records += rows_ or (measure_in_child(tg, **kw) if isolate else target_pipeline.measure_pipeline(tg, **kw))
            continue
        row = skipped(tg, device=kw["device"])  # a target that cannot run here: no subprocess, a marked row
        records += [row] if row else measure_in_child(tg, fid=fid, **kw) if isolate else [
            measure_target(tg, fid=fid, **kw)]
    write_report(records, Path(out_dir), compare=compare)
    return records


def _eager(records: list[Record], model: str | None = None) -> Record | None:
    return next((r for r in records if r.backend == "eager" and r.precision == "fp32" and r.step
                 and (model is None or r.model == model) and (model is not None or r.image_ms)), None)


def rows(records: list[Record]) -> list[dict]:
    """Row dicts with two speed-ups: ms/step p50 against the same model's eager fp32 row (None without one), and
    ms per image (one image of the batch, with each model's recommended sampler and steps) against the first
    eager fp32 row, the baseline: a 2-step student then shows what its steps save, not only its network."""
    ref = _eager(records)
    out = []
    for r in records:
        own = _eager(records, r.model)
        step = own.step["p50"] / r.step["p50"] if own and r.step else None
        per_image = r.image_ms / r.batch if r.image_ms else None
        image = (ref.image_ms / ref.batch) / per_image if ref and ref.image_ms and per_image else None
        out.append({**r.to_dict(), "speedup": step, "image_speedup": image,
                    "baseline": f"{ref.model} eager fp32" if ref else None})
    return out


def write_report(records: list[Record], out_dir: Path, *, compare=None) -> None:
    """Write report.json, report.jsonl, report.md, latency.png and pareto.png into `out_dir`, each atomically."""
    table = rows(records)
    h = next((r["host"] for r in table if r["host"]), None) or host()
    write_bench(table, Path(out_dir), host=h, peak=peak_gflops(h), compare=compare)
