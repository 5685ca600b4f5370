"""`edgediff bench`: load, first-call, per-step and end-to-end image latency of models and artifacts, as a report.

Protocol per target: cold load (+ compile, + hash check for artifacts) as the median of 3 fresh loads, the first
inference after the last load, steady per-step latency (`warmup` untimed, `iters` timed), and end-to-end latency of
one image batch with the target's recommended sampler/steps/guidance. The time inside the runner is counted by a
wrapper, so the host-side sampler overhead (numpy) is reported separately. Each target runs in a fresh subprocess
(`edgediff.bench_worker`) by default, so its peak RSS is its own; `fid=N` adds FID-proxy on N samples.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .bench_worker import executorch_threads, threads_used
from .errors import InputError
from .latency import FLOPS_PER_CYCLE, cpu_seconds, host, measure, peak_gflops, peak_rss_mb  # noqa: F401

DEVICE_BACKENDS = ("openvino", "coreml")  # --device: an OpenVINO device (CPU/GPU/NPU/AUTO) or a Core ML compute unit
NO_FID = {"fid_proxy": None, "fid_floor": None, "fid_n": None}


@dataclass(frozen=True)
class Record:
    """One report row: one target (backend × precision × device) measured on this host."""

    backend: str
    precision: str
    device: str
    model: str | None
    path: str
    batch: int
    threads: int | None  # what the runtime reports it uses (the request where it cannot say)
    threads_requested: int | None
    cpu_util: float | None  # CPU seconds / wall seconds over the steady loop: cores kept busy
    load_ms: float | None
    first_ms: float | None
    step: dict
    image_ms: float | None  # None where only the network ran (a phone: the sampler stays on the host)
    sampler_overhead_ms: float | None
    sampler_overhead_frac: float | None
    calls_per_image: float | None
    size_mb: float
    peak_rss_mb: float | None  # of the whole measuring process; None when measured in-process
    parity_db: float | None
    fid_proxy: float | None
    fid_floor: float | None
    fid_n: int | None
    gflops_per_step: float | None
    gflops_per_s: float | None
    sampler: dict
    host: dict
    isolated: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Record:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _model_name(model) -> str | None:
    if isinstance(model, dict):
        return model.get("name") or model.get("path") or "diffusers"
    return None if model is None else Path(str(model)).name


def describe(target) -> dict:
    """Backend, precision, size, parity, source config and options of a model dir or an artifact dir."""
    from . import artifact, checkpoint

    if (Path(target) / artifact.ARTIFACT_FILE).is_file():
        art = artifact.read(target)
        return {"backend": art.backend, "precision": art.precision, "path": str(art.path),
                "size_mb": art.size_bytes / 1e6, "parity_db": art.parity_db, "config": art.source.get("config"),
                "batch": art.spec["x"][0][0], "model": _model_name(art.source.get("model"))}
    md = checkpoint.load(target, weights=False)
    return {"backend": "eager", "precision": "fp32", "path": str(md.path), "parity_db": None,
            "size_mb": (md.path / checkpoint.WEIGHTS_FILE).stat().st_size / 1e6, "config": md.unet.to_dict(),
            "batch": 1, "model": md.meta.get("name", md.path.name)}


def _options(backend: str, device: str | None, threads: int | None) -> tuple[dict, str]:
    """Runtime options for `backend` and the device name to report."""
    if backend == "openvino":
        return {"device": device or "CPU"} | ({"threads": threads} if threads else {}), device or "CPU"
    if backend == "coreml":
        return {"compute_units": device or "ALL"}, device or "ALL"
    if device not in (None, "CPU"):
        raise InputError(f"{backend} runs on the host CPU here; --device {device!r} applies to "
                         f"{' and '.join(DEVICE_BACKENDS)} only")
    return ({"threads": threads} if threads and backend == "eager" else {}), "CPU"


def gflops_per_step(config: dict | None, batch: int) -> float | None:
    """GFLOPs of one network call at `batch` for a UNet config (None without one)."""
    if not config:
        return None
    from .unet import UNet, UNetConfig, flops_per_step

    cfg = UNetConfig.from_dict(config)
    return flops_per_step(UNet(cfg).eval(), cfg, batch=batch) / 1e9


class _Counted:
    """A Runner wrapper that counts calls and the wall time spent inside them."""

    def __init__(self, runner):
        self.runner, self.calls, self.seconds = runner, 0, 0.0
        self.takes_guidance = getattr(runner, "takes_guidance", False)

    def __call__(self, x, t, label=None, *w):
        t0 = time.perf_counter()
        try:
            return self.runner(x, t, label, *w)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def _inputs(shape: tuple[int, ...], num_classes: int, batch: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    t = np.full(batch, 0.25, np.float32)
    label = np.zeros(batch, np.int64) if num_classes else None
    return x, t, label


def _request(defaults: dict, n: int, batch: int):
    from .generate import recommended

    return recommended(defaults, n=n, batch_size=batch)


def _image(runner, src: tuple, batch: int, *, repeats: int = 3) -> dict:
    """End-to-end image latency (median of `repeats` after one warm-up) and the time inside the runner."""
    from .generate import generate

    precond, num_classes, shape, defaults = src
    req = _request(defaults, batch, batch)
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


def _fid(runner, src: tuple, batch: int, n: int) -> dict:
    """FID-proxy (and its real-vs-real floor) of n seeded samples drawn with the target's recommended sampler."""
    from . import metrics
    from .generate import generate, static_batch

    precond, num_classes, shape, defaults = src
    images, labels = generate(static_batch(runner, batch), precond, shape, _request(defaults, n, batch),
                              num_classes=num_classes)
    ev = metrics.evaluate(images, labels)
    return {"fid_proxy": ev.fid, "fid_floor": ev.floor_fid, "fid_n": n}


def _open(target, options: dict) -> tuple:
    """(runner, (precond, num_classes, (C, H, W), sampler defaults)); an artifact's runner at its static batch."""
    from . import artifact
    from .converters import get
    from .denoiser import Preconditioning
    from .generate import open_runner

    if (Path(target) / artifact.ARTIFACT_FILE).is_file():
        art = artifact.read(target)
        shape = art.spec["x"][0]
        return get(art.backend).load(art, **options), (Preconditioning.from_dict(art.precond), art.num_classes,
                                                       tuple(shape[1:]), art.sampler_defaults)
    runner, *src = open_runner(target, "auto", options)
    return runner, tuple(src)


def _load(target, options: dict, *, loads: int = 3) -> tuple:
    """Load `target` `loads` times from scratch; the last (runner, source) and the median load time in ms."""
    times, opened = [], None
    for _ in range(loads):
        opened = None  # let the previous runner go first, so peak RSS holds one
        t0 = time.perf_counter()
        opened = _open(target, options)
        times.append((time.perf_counter() - t0) * 1e3)
    return opened[0], opened[1], statistics.median(times)


def measure_artifact(target, *, device: str | None = None, threads: int | None = None, warmup: int = 3,
                     iters: int = 20, fid: int = 0, isolated: bool = False) -> Record:
    """Benchmark a model dir (eager fp32 reference) or an artifact dir (its own backend) in this process."""
    desc = describe(target)
    options, dev = _options(desc["backend"], device, threads)
    if desc["backend"] == "executorch":
        executorch_threads(threads)
    runner, src, load_ms = _load(target, options)
    batch = desc["batch"]
    x, t, label = _inputs(src[2], src[1], batch)
    t0 = time.perf_counter()
    runner(x, t, label)
    first_ms = (time.perf_counter() - t0) * 1e3
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    step = measure(lambda: runner(x, t, label), warmup=warmup, iters=iters).summary()
    cpu_util = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
    image = _image(runner, src, batch)
    rss = peak_rss_mb() if isolated else None  # before FID: the metric and its data are not the target's memory
    quality = _fid(runner, src, batch, fid) if fid else NO_FID
    gflops = gflops_per_step(desc["config"], batch)
    return Record(backend=desc["backend"], precision=desc["precision"], device=dev, model=desc["model"],
                  path=desc["path"], batch=batch, threads=threads_used(desc["backend"], runner, threads),
                  threads_requested=threads, cpu_util=cpu_util, load_ms=load_ms, first_ms=first_ms, step=step,
                  size_mb=desc["size_mb"], peak_rss_mb=rss, parity_db=desc["parity_db"], gflops_per_step=gflops,
                  gflops_per_s=gflops / (step["p50"] / 1e3) if gflops else None, host=host(), isolated=isolated,
                  **image, **quality)


def baseline_model(targets: list) -> str | None:
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
        except (EdgediffError, TypeError):
            continue
        if artifact.file_sha256(path / checkpoint.WEIGHTS_FILE) == src.get("checkpoint_sha256"):
            return str(path)
    return None


def run(targets, *, out_dir, device: str | None = None, threads: int | None = None, warmup: int = 3,
        iters: int = 20, progress: bool = True, compare=None, fid: int = 0, isolate: bool = True) -> list[Record]:
    """Benchmark every target (+ the eager fp32 baseline); write report.json/.jsonl/.md, latency.png, pareto.png."""
    from .bench_worker import measure_in_child
    from .report import read_rows

    targets = [str(t) for t in targets]
    if not targets:
        raise InputError("bench needs at least one model or artifact directory")
    if fid and fid < 2:
        raise InputError(f"--fid needs at least 2 samples, got {fid}")
    backends = {t: describe(t)["backend"] for t in targets}  # every target is checked before anything runs
    if compare is not None:
        read_rows(compare)
    base = baseline_model(targets)
    todo = ([base] if base else []) + targets
    if base:
        backends[base] = "eager"
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = todo = tqdm(todo, desc="bench", unit="target")
    records = []
    for tg in todo:
        if bar is not None:
            bar.set_postfix_str(f"{backends[tg]} {Path(tg).name}")
        kw = {"device": device if backends[tg] in DEVICE_BACKENDS else None, "threads": threads,
              "warmup": warmup, "iters": iters, "fid": fid}
        records.append(measure_in_child(tg, **kw) if isolate else measure_artifact(tg, **kw))
    write_report(records, Path(out_dir), compare=compare)
    return records


def rows(records: list[Record]) -> list[dict]:
    """Row dicts with the speed-up of ms/step p50 against the eager fp32 row (None without one)."""
    ref = next((r.step["p50"] for r in records if r.backend == "eager" and r.precision == "fp32"), None)
    return [{**r.to_dict(), "speedup": ref / r.step["p50"] if ref else None} for r in records]


def write_report(records: list[Record], out_dir: Path, *, compare=None) -> None:
    """Write report.json, report.jsonl, report.md, latency.png and pareto.png into `out_dir`, each atomically."""
    from .report import write_bench

    table = rows(records)
    h = table[0]["host"] if table else host()
    write_bench(table, Path(out_dir), host=h, peak=peak_gflops(h), compare=compare)
