"""Measuring one bench target in this process: cold load, first call, steady per-step latency and one image end to
end with its recommended sampler (the time inside the Runner counted apart from the host sampler), + FID-proxy."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from edgediff.converters import base
from edgediff.format import artifact
from edgediff.format.configs import UNetConfig
from edgediff.measure.latency import cpu_seconds, host, measure, peak_rss_mb
from edgediff.measure.record import Record
from edgediff.models import checkpoint
from edgediff.runtime.open import Model, open_model, static_batch
from edgediff.sampling.generate import generate, recommended

NO_FID = {"fid_proxy": None, "fid_floor": None, "fid_n": None}


def describe(target) -> dict:
    """Backend, precision, size, parity, source config and batch of a model dir or an artifact dir (no runtime)."""
    if (Path(target) / artifact.ARTIFACT_FILE).is_file():
        art = artifact.read(target)
        return {"backend": art.backend, "precision": art.precision, "path": str(art.path),
                "size_mb": art.size_bytes / 1e6, "parity_db": art.parity_db, "config": art.source.get("config"),
                "batch": art.spec["x"][0][0], "model": artifact.model_name(art)}
    md = checkpoint.load(target, weights=False)
    return {"backend": "eager", "precision": "fp32", "path": str(md.path), "parity_db": None,
            "size_mb": md.weights_file.stat().st_size / 1e6, "config": md.unet.to_dict(),
            "batch": 1, "model": md.meta.get("name", md.path.name)}


def gflops_per_step(config: dict | None, batch: int) -> float | None:
    """GFLOPs of one network call at `batch` for a UNet config (None without one)."""
    if not config:
        return None
    from edgediff.models.unet import UNet, flops_per_step

    if "diffusers" in config:
        from edgediff.models.diffusers import from_config

        net = from_config(config)
        return flops_per_step(net, net.config, batch=batch) / 1e9
    cfg = UNetConfig.from_dict(config)
    return flops_per_step(UNet(cfg).eval(), cfg, batch=batch) / 1e9


def skipped(target, *, device: str | None = None) -> Record | None:
    """A row marked with the reason `target` cannot run on this machine (None when it can)."""
    desc = describe(target)
    be = base.get(desc["backend"])
    reason = be.unavailable()
    if reason is None:
        return None
    return Record(backend=desc["backend"], precision=desc["precision"], device=device or be.default_device,
                  model=desc["model"], path=desc["path"], batch=desc["batch"], size_mb=desc["size_mb"],
                  parity_db=desc["parity_db"], host=host(), skipped=reason)


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


def _inputs(m: Model, batch: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *m.shape), dtype=np.float32)
    t = np.full(batch, 0.25, np.float32)
    label = np.zeros(batch, np.int64) if m.num_classes else None
    return x, t, label


def _image(m: Model, batch: int, *, repeats: int = 3) -> dict:
    """End-to-end image latency (median of `repeats` after one warm-up) and the time inside the runner."""
    req = recommended(m.sampler_defaults, n=batch, batch_size=batch)
    counted = _Counted(m.runner)
    generate(counted, m.precond, m.shape, req, num_classes=m.num_classes)
    totals, inside, calls = [], [], []
    for _ in range(repeats):
        counted.calls, counted.seconds = 0, 0.0
        t0 = time.perf_counter()
        generate(counted, m.precond, m.shape, req, num_classes=m.num_classes)
        totals.append((time.perf_counter() - t0) * 1e3)
        inside.append(counted.seconds * 1e3)
        calls.append(counted.calls)
    total = statistics.median(totals)
    overhead = statistics.median(a - b for a, b in zip(totals, inside, strict=True))
    return {"image_ms": total, "sampler_overhead_ms": overhead, "sampler_overhead_frac": overhead / total,
            "calls_per_image": statistics.median(calls),
            "sampler": {"name": req.sampler, "steps": req.steps, "guidance": req.guidance}}


def _fid(m: Model, batch: int, n: int) -> dict:
    """FID-proxy (and its real-vs-real floor) of n seeded samples drawn with the target's recommended sampler."""
    from edgediff.measure import quality

    req = recommended(m.sampler_defaults, n=n, batch_size=batch)
    images, labels = generate(static_batch(m.runner, batch), m.precond, m.shape, req, num_classes=m.num_classes)
    ev = quality.evaluate(images, labels)
    return {"fid_proxy": ev.fid, "fid_floor": ev.floor_fid, "fid_n": n}


def _load(target, *, loads: int = 3, **options) -> tuple[Model, float]:
    """Load `target` `loads` times from scratch; the last Model and the median load time in ms."""
    times, m = [], None
    for _ in range(loads):
        m = None  # let the previous runner go first, so peak RSS holds one
        t0 = time.perf_counter()
        m = open_model(target, **options)
        times.append((time.perf_counter() - t0) * 1e3)
    return m, statistics.median(times)


def measure_target(target, *, device: str | None = None, threads: int | None = None, warmup: int = 3,
                   iters: int = 20, fid: int = 0, isolated: bool = False) -> Record:
    """Benchmark a model dir (eager fp32 reference) or an artifact dir (its own backend) in this process; a target
    that cannot run on this machine becomes a row saying why."""
    desc = describe(target)
    be = base.get(desc["backend"])
    device = device if be.takes_device else None
    row = skipped(target, device=device)
    if row is not None:
        return row
    m, load_ms = _load(target, device=device, threads=threads)
    batch = desc["batch"]
    x, t, label = _inputs(m, batch)
    t0 = time.perf_counter()
    m.runner(x, t, label)
    first_ms = (time.perf_counter() - t0) * 1e3
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    step = measure(lambda: m.runner(x, t, label), warmup=warmup, iters=iters).summary()
    cpu_util = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
    image = _image(m, batch)
    rss = peak_rss_mb() if isolated else None  # before FID: the metric and its data are not the target's memory
    quality = _fid(m, batch, fid) if fid else NO_FID
    gflops = gflops_per_step(desc["config"], batch)
    return Record(backend=desc["backend"], precision=desc["precision"], device=m.device, model=desc["model"],
                  path=desc["path"], batch=batch, threads=getattr(m.runner, "threads", None) or threads,
                  threads_requested=threads, cpu_util=cpu_util, load_ms=load_ms, first_ms=first_ms, step=step,
                  size_mb=desc["size_mb"], peak_rss_mb=rss, parity_db=desc["parity_db"], gflops_per_step=gflops,
                  gflops_per_s=gflops / (step["p50"] / 1e3) if gflops else None, host=host(), isolated=isolated,
                  **image, **quality)
