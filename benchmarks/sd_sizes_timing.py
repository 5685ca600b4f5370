"""Timing and memory helpers shared by the sd_sizes workers, in both environments (edgediff's and optimum-intel's,
which lacks edgediff): the min of medians of `edgediff.measure.latency.min_of_medians`, with the number of calls
sized to a time budget so a 20-second VAE call and a 2-millisecond text-encoder call both get a fair figure, and
the process's peak RSS as `edgediff.converters.memory.peak_rss_mb` reads it (VmHWM on Linux)."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

RESULT = "SD_SIZES_RESULT "  # the worker's last stdout line: this prefix + the cell's JSON result


def time_call(fn, *, budget_s: float = 60.0, max_iters: int = 20, min_iters: int = 3) -> dict:
    """ms per call: a timed warm-up call, then the min of up to 3 medians, sized to take about `budget_s`."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    iters = max(min_iters, min(max_iters, int(budget_s / (3 * max(first, 1e-4)))))
    repeats = 3 if 3 * iters * first <= 1.5 * budget_s else 1
    medians = []
    for _ in range(repeats):
        samples = []
        for _ in range(iters):
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1e3)
        samples.sort()
        mid = len(samples) // 2
        medians.append(samples[mid] if len(samples) % 2 else (samples[mid - 1] + samples[mid]) / 2)
    return {"ms": round(min(medians), 3), "first_ms": round(first * 1e3, 1), "iters": iters, "repeats": repeats}


def time_image(draw, *, steps: int, budget_s: float) -> dict:
    """Seconds per image from `time_call` (at most 5 timed images, at least 3; a 20-step image, 40 UNet calls
    with guidance, at least 1, since one image already averages over its 40 UNet calls)."""
    timing = time_call(draw, budget_s=budget_s, max_iters=5, min_iters=1 if steps >= 20 else 3)
    return {"s": round(timing["ms"] / 1e3, 3), "first_s": round(timing["first_ms"] / 1e3, 2),
            "iters": timing["iters"], "repeats": timing["repeats"], "peak_rss_gb": peak_rss_gb()}


def peak_rss_gb() -> float:
    """This process's peak resident set size so far, in GB (VmHWM on Linux, else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) * 1024 / 1e9, 3)
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round((rss if sys.platform == "darwin" else rss * 1024) / 1e9, 3)


def dir_bytes(path) -> int:
    """Bytes of every file under `path`."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def report(result: dict) -> None:
    """Print the worker's result line (the parent reads the last such line)."""
    print(RESULT + json.dumps(result), flush=True)


def save_output(path, array) -> None:
    """One call's output as .npy, for the parent's PSNR against eager's."""
    import numpy as np

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(array, dtype=np.float32))


def measure_call(fn, args, out, *, budget_s: float, load_s: float) -> dict:
    """One component's first call (its output saved to `out` for PSNR against eager's; torch.compile compiles
    and runtimes allocate here), then `time_call` on the same inputs."""
    started = time.perf_counter()
    save_output(out, fn(*args))
    first_call_s = time.perf_counter() - started
    timing = time_call(lambda: fn(*args), budget_s=budget_s)
    return {**timing, "load_s": round(load_s, 2), "first_call_s": round(first_call_s, 2),
            "peak_rss_gb": peak_rss_gb()}
