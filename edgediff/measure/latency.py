"""Latency measurement: warm up, time many calls, report robust statistics (median first); host facts for reports."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from edgediff.converters.memory import peak_rss_mb  # noqa: F401  (re-exported for bench)
from edgediff.errors import InputError


@dataclass(frozen=True)
class Latency:
    """Per-call wall times in milliseconds and their summary statistics."""

    samples: tuple[float, ...]

    @property
    def p50(self) -> float:
        return float(np.percentile(self.samples, 50))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.samples, 90))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.samples, 99))

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))

    @property
    def std(self) -> float:
        return float(np.std(self.samples))

    @property
    def min(self) -> float:
        return float(np.min(self.samples))

    def summary(self) -> dict:
        return {"n": len(self.samples), "p50": self.p50, "p90": self.p90, "p99": self.p99, "mean": self.mean,
                "std": self.std, "min": self.min}

    def to_dict(self) -> dict:
        return {**asdict(self), **self.summary()}


def measure(fn: Callable[[], object], *, warmup: int = 3, iters: int = 20, min_seconds: float = 0.0) -> Latency:
    """Call fn `warmup` times untimed, then at least `iters` times and at least `min_seconds` in total."""
    if warmup < 0 or iters < 1:
        raise InputError(f"need warmup >= 0 and iters >= 1, got {warmup}, {iters}")
    for _ in range(warmup):
        fn()
    samples, start = [], time.perf_counter()
    while len(samples) < iters or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return Latency(tuple(samples))


def min_of_medians(fn: Callable[[], object], *, repeats: int = 3, **kw) -> float:
    """The smallest of `repeats` medians: the least noisy single figure on a shared machine."""
    return min(measure(fn, **kw).p50 for _ in range(repeats))


FLOPS_PER_CYCLE = {"avx512f": 64, "avx2": 32, "sse2": 8}  # fp32 FLOPs/cycle/core with FMA units (estimate)


def runtime_packages() -> list[str]:
    """The packages every registered backend needs (openvino, executorch, coremltools, ...), in registry order."""
    from edgediff.converters import base

    names = [m for n in base.names() for m in base.get(n).requires]
    return [m for m in dict.fromkeys(names) if m not in ("torch", "numpy")]


def host() -> dict:
    """CPU model, cores, clock, OS, Python and runtime versions of this machine."""
    info = _cpuinfo()
    versions = {}
    for dist in ("torch", "numpy", *runtime_packages()):
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


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


