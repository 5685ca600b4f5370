"""Latency measurement: warm up, time many calls, report robust statistics (median first, never the mean)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError


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
