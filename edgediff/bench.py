"""`edgediff bench`: load, first-call, per-step and end-to-end image latency of models and artifacts, as a report.

Protocol per target: cold load (+ compile, + hash check for artifacts) as the median of 3 fresh loads, the first
inference after the last load, steady per-step latency (`warmup` untimed, `iters` timed), and end-to-end latency of
one image batch with the target's recommended sampler/steps/guidance. The time inside the runner is counted by a
wrapper, so the host-side sampler overhead (numpy) is reported separately.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from .errors import InputError
from .latency import measure

FLOPS_PER_CYCLE = {"avx512f": 64, "avx2": 32, "sse2": 8}  # fp32 FLOPs/cycle/core with FMA units (estimate)


@dataclass(frozen=True)
class Record:
    """One report row: one target (backend × precision × device) measured on this host."""

    backend: str
    precision: str
    device: str
    path: str
    batch: int
    threads: int | None
    load_ms: float
    first_ms: float
    step: dict
    image_ms: float
    sampler_overhead_ms: float
    sampler_overhead_frac: float
    calls_per_image: float
    size_mb: float
    parity_db: float | None
    gflops_per_step: float | None
    gflops_per_s: float | None
    sampler: dict
    host: dict

    def to_dict(self) -> dict:
        return asdict(self)


def host() -> dict:
    """CPU model, cores, clock, OS, Python and runtime versions of this machine."""
    info = _cpuinfo()
    versions = {}
    for dist in ("torch", "openvino", "executorch", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"cpu": info.get("model name", platform.processor() or "unknown"), "cores": os.cpu_count(),
            "mhz": float(info["cpu MHz"]) if "cpu MHz" in info else None, "simd": _simd(info.get("flags", "")),
            "os": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
            "python": platform.python_version(), **versions}


def _cpuinfo() -> dict:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def _simd(flags: str) -> str | None:
    names = set(flags.split())
    return next((f for f in FLOPS_PER_CYCLE if f in names), None)


def peak_gflops(h: dict) -> float | None:
    """Estimated fp32 peak: cores × GHz × FLOPs/cycle/core for the widest FMA SIMD the CPU reports."""
    if not (h.get("mhz") and h.get("cores") and h.get("simd")):
        return None
    return h["cores"] * h["mhz"] / 1e3 * FLOPS_PER_CYCLE[h["simd"]]


def _describe(target) -> dict:
    """Backend, precision, size, parity, source config and options of a model dir or an artifact dir."""
    from . import artifact, checkpoint

    if (Path(target) / artifact.ARTIFACT_FILE).is_file():
        art = artifact.read(target)
        return {"backend": art.backend, "precision": art.precision, "path": str(art.path),
                "size_mb": art.size_bytes / 1e6, "parity_db": art.parity_db, "config": art.source.get("config"),
                "batch": art.spec["x"][0][0]}
    md = checkpoint.load(target, weights=False)
    return {"backend": "eager", "precision": "fp32", "path": str(md.path), "parity_db": None,
            "size_mb": (md.path / checkpoint.WEIGHTS_FILE).stat().st_size / 1e6, "config": md.unet.to_dict(),
            "batch": 1}


def _options(backend: str, device: str | None, threads: int | None) -> tuple[dict, str]:
    """Runtime options for `backend` and the device name to report."""
    if backend == "openvino":
        opts = {"device": device} if device else {}
        return opts | ({"threads": threads} if threads else {}), device or "CPU"
    if device not in (None, "CPU"):
        raise InputError(f"{backend} runs on the host CPU here; --device {device!r} applies to openvino only")
    if backend == "executorch":
        return {}, "CPU"
    return ({"threads": threads} if threads else {}), "CPU"


def _gflops(config: dict | None, batch: int) -> float | None:
    if not config:
        return None
    from .unet import UNet, UNetConfig, flops_per_step

    cfg = UNetConfig.from_dict(config)
    return flops_per_step(UNet(cfg).eval(), cfg, batch=batch) / 1e9


class _Counted:
    """A Runner wrapper that counts calls and the wall time spent inside them."""

    def __init__(self, runner):
        self.runner, self.calls, self.seconds = runner, 0, 0.0

    def __call__(self, x, t, label=None):
        t0 = time.perf_counter()
        try:
            return self.runner(x, t, label)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def _inputs(shape: tuple[int, ...], num_classes: int, batch: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    t = np.full(batch, 0.25, np.float32)
    label = np.zeros(batch, np.int64) if num_classes else None
    return x, t, label


def _image(runner, src: tuple, batch: int, *, repeats: int = 3) -> dict:
    """End-to-end image latency (median of `repeats` after one warm-up) and the time inside the runner."""
    from .generate import Request, generate

    _, precond, num_classes, shape, defaults = src
    req = Request(n=batch, batch_size=batch, sampler=defaults.get("sampler", "dpmpp_2m"),
                  steps=int(defaults.get("steps", 10)), guidance=float(defaults.get("guidance", 1.0)))
    counted = _Counted(runner)
    generate(counted, precond, shape, req, num_classes=num_classes)
    totals, inside, calls = [], [], []
    for _ in range(repeats):
        counted.calls, counted.seconds = 0, 0.0
        t0 = time.perf_counter()
        generate(counted, precond, shape, req, num_classes=num_classes)
        totals.append((time.perf_counter() - t0) * 1e3)
        inside.append(counted.seconds * 1e3)
        calls.append(counted.calls)
    total = statistics.median(totals)
    overhead = statistics.median(a - b for a, b in zip(totals, inside, strict=True))
    return {"image_ms": total, "sampler_overhead_ms": overhead, "sampler_overhead_frac": overhead / total,
            "calls_per_image": statistics.median(calls),
            "sampler": {"name": req.sampler, "steps": req.steps, "guidance": req.guidance}}


def _load(target, options: dict, *, loads: int = 3) -> tuple[tuple, float]:
    """Load `target` `loads` times from scratch; the last source and the median load time in ms."""
    from .generate import open_runner

    times, src = [], None
    for _ in range(loads):
        t0 = time.perf_counter()
        src = open_runner(target, "auto", options)
        times.append((time.perf_counter() - t0) * 1e3)
    return src, statistics.median(times)


def measure_artifact(target, *, device: str | None = None, threads: int | None = None, warmup: int = 3,
                     iters: int = 20) -> Record:
    """Benchmark a model dir (eager fp32 reference) or an artifact dir (its own backend) on this host."""
    desc = _describe(target)
    options, dev = _options(desc["backend"], device, threads)
    src, load_ms = _load(target, options)
    runner, batch = src[0], desc["batch"]
    x, t, label = _inputs(src[3], src[2], batch)
    t0 = time.perf_counter()
    runner(x, t, label)
    first_ms = (time.perf_counter() - t0) * 1e3
    step = measure(lambda: runner(x, t, label), warmup=warmup, iters=iters).summary()
    image = _image(runner, src, batch)
    gflops = _gflops(desc["config"], batch)
    return Record(backend=desc["backend"], precision=desc["precision"], device=dev, path=desc["path"], batch=batch,
                  threads=threads, load_ms=load_ms, first_ms=first_ms, step=step, size_mb=desc["size_mb"],
                  parity_db=desc["parity_db"], gflops_per_step=gflops,
                  gflops_per_s=gflops / (step["p50"] / 1e3) if gflops else None, host=host(), **image)


def _baseline(targets: list) -> str | None:
    """The model dir behind the targets: a model-dir target, else the artifacts' shipped source model."""
    from . import artifact, checkpoint
    from .errors import EdgediffError

    for target in targets:
        if not (Path(target) / artifact.ARTIFACT_FILE).is_file():
            return None  # a model dir is itself a target (and the eager baseline)
    for target in targets:
        src = artifact.read(target).source
        try:
            path = checkpoint.resolve(src.get("model", ""))
        except EdgediffError:
            continue
        if artifact.file_sha256(path / checkpoint.WEIGHTS_FILE) == src.get("checkpoint_sha256"):
            return str(path)
    return None


def run(targets, *, out_dir, device: str | None = None, threads: int | None = None, warmup: int = 3,
        iters: int = 20, progress: bool = True, compare=None) -> list[Record]:
    """Benchmark every target (+ the eager fp32 baseline) and write report.json/.md, latency.png, pareto.png."""
    targets = [str(t) for t in targets]
    if not targets:
        raise InputError("bench needs at least one model or artifact directory")
    from .report import read_rows

    for target in targets:
        _describe(target)  # every target (and the old report) is checked before anything is measured
    if compare is not None:
        read_rows(compare)
    base = _baseline(targets)
    todo = ([base] if base else []) + targets
    if progress:
        from tqdm.auto import tqdm

        todo = tqdm(todo, desc="bench", unit="target")
    records = [measure_artifact(tg, device=device if _describe(tg)["backend"] == "openvino" else None,
                                threads=threads, warmup=warmup, iters=iters) for tg in todo]
    write_report(records, Path(out_dir), compare=compare)
    return records


def rows(records: list[Record]) -> list[dict]:
    """Row dicts with the speed-up of ms/step p50 against the eager fp32 row (None without one)."""
    ref = next((r.step["p50"] for r in records if r.backend == "eager" and r.precision == "fp32"), None)
    return [{**r.to_dict(), "speedup": ref / r.step["p50"] if ref else None} for r in records]


def write_report(records: list[Record], out_dir: Path, *, compare=None) -> None:
    """Write report.json, report.md, latency.png and pareto.png into `out_dir`, each atomically."""
    from . import report
    from .checkpoint import atomic_path, write_text

    table = rows(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_json(out_dir / "report.json", table)
    text = markdown(table)
    if compare is not None:
        text += "\n\n" + report.format_changes(report.changes(table, report.read_rows(compare)), compare)
    write_text(out_dir / "report.md", text + "\n")
    for name, plot in (("latency.png", report.latency_plot), ("pareto.png", report.pareto_plot)):
        with atomic_path(out_dir / name) as tmp:
            plot(table, tmp)


def _fmt(v, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def markdown(table: list[dict]) -> str:
    """The report table plus a line describing the host and its estimated fp32 peak."""
    from .report import markdown_table

    headers = ["backend", "precision", "device", "batch", "load ms", "ms/step p50", "ms/step p90", "image ms",
               "sampler %", "MB", "parity dB", "GFLOP/s", "speed-up"]
    body = [[r["backend"], r["precision"], r["device"], r["batch"], _fmt(r["load_ms"], ".0f"), _fmt(r["step"]["p50"]),
             _fmt(r["step"]["p90"]), _fmt(r["image_ms"], ".1f"), _fmt(100 * r["sampler_overhead_frac"], ".1f"),
             _fmt(r["size_mb"]), _fmt(r["parity_db"], ".1f"), _fmt(r["gflops_per_s"], ".1f"),
             _fmt(r["speedup"], ".2f") + ("×" if r["speedup"] else "")] for r in table]
    return markdown_table(headers, body) + "\n\n" + host_line(table[0]["host"] if table else host(), table)


def host_line(h: dict, table: list[dict]) -> str:
    peak = peak_gflops(h)
    s = table[0]["sampler"] if table else {}
    est = (f"estimated fp32 peak {peak:.0f} GFLOP/s (estimate: {h['cores']} cores × {h['mhz'] / 1e3:.2f} GHz × "
           f"{FLOPS_PER_CYCLE[h['simd']]} FLOPs/cycle, {h['simd']} FMA)") if peak else "fp32 peak unknown"
    return (f"Host: {h['cpu']}, {h['cores']} cores, {h['os']}, python {h['python']}, torch {h['torch']}, "
            f"openvino {h['openvino']}, executorch {h['executorch']}; {est}. Image = one batch with "
            f"{s.get('name')}×{s.get('steps')} steps, guidance {s.get('guidance')}; sampler % = host time outside "
            f"the network calls.")
