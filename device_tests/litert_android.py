"""A .tflite artifact on an Android phone with LiteRT's `benchmark_model` over adb (CPU/XNNPACK or the GPU delegate).

`benchmark_model` is LiteRT's own native benchmark binary, built for the phone (Bazel target
`//tflite/tools/benchmark:benchmark_model`, or the prebuilt one LiteRT publishes); pass `--benchmark-model PATH` or
set $EDGEDIFF_LITERT_BENCHMARK. It prints one line `Inference timings in us: Init: …, First inference: …,
Warmup (avg): …, Inference (avg): …`, which is parsed into a bench row (network latency only: the sampler runs on
the host).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgediff.measure import adb
from edgediff.measure.latency import Latency, host
from edgediff.measure.record import Record
from edgediff.measure.target import describe, gflops_per_step

BENCHMARK_ENV = "EDGEDIFF_LITERT_BENCHMARK"
REMOTE = "/data/local/tmp/edgediff-litert"
TIMINGS = re.compile(r"Inference timings in us: Init: ([\d.]+), First inference: ([\d.]+), "
                     r"Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)")


@dataclass(frozen=True, kw_only=True)
class Timing:
    """What benchmark_model reported, in ms."""

    init_ms: float
    first_ms: float
    warmup_ms: float
    mean_ms: float


def find_benchmark(path: str | os.PathLike | None = None) -> Path:
    """The user's benchmark_model binary for the phone: `path`, else $EDGEDIFF_LITERT_BENCHMARK."""
    given = path or os.environ.get(BENCHMARK_ENV)
    if not given:
        raise adb.AdbError(f"LiteRT on Android needs LiteRT's benchmark_model built for the phone: pass "
                           f"--benchmark-model PATH or set ${BENCHMARK_ENV}")
    if not Path(given).is_file():
        raise adb.AdbError(f"benchmark_model {given} does not exist (from --benchmark-model or ${BENCHMARK_ENV})")
    return Path(given)


def parse_output(text: str) -> Timing:
    """The timing line of benchmark_model's log; AdbError with its last line when it did not finish a run."""
    found = TIMINGS.findall(text)
    if not found:
        last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "no output")
        raise adb.AdbError(f"benchmark_model did not report timings: {last.strip()}")
    init, first, warmup, mean = (float(v) / 1e3 for v in found[-1])
    return Timing(init_ms=init, first_ms=first, warmup_ms=warmup, mean_ms=mean)


def _run(cmd: list[str], timeout: float = 600) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise adb.AdbError(f"`{shlex.join(cmd)}` failed: {e}") from None
    return proc.stdout + proc.stderr


def run_tflite(art, binary: Path, *, device: adb.Device, gpu: bool, threads: int = 4, runs: int = 20,
               warmup: int = 3) -> tuple[Timing, str]:
    """Push the model and benchmark_model, run it (XNNPACK on the CPU, or the GPU delegate), parse the timings."""
    base = [adb.find_adb(), "-s", device.serial]
    _run([*base, "shell", "mkdir", "-p", REMOTE])
    _run([*base, "push", str(art.model_path), f"{REMOTE}/model.tflite"])
    _run([*base, "push", str(binary), f"{REMOTE}/benchmark_model"])
    _run([*base, "shell", "chmod", "755", f"{REMOTE}/benchmark_model"])
    flags = [f"--graph={REMOTE}/model.tflite", f"--num_threads={threads}", f"--num_runs={runs}",
             f"--warmup_runs={warmup}", f"--use_gpu={'true' if gpu else 'false'}",
             f"--use_xnnpack={'false' if gpu else 'true'}"]
    log = _run([*base, "shell", f"{REMOTE}/benchmark_model {shlex.join(flags)}"])
    return parse_output(log), log


def to_record(art, timing: Timing, *, gpu: bool, facts: dict, serial: str) -> Record:
    """A bench row for a phone run; benchmark_model reports means, so p50 = p90 = the mean."""
    desc = describe(art.path)
    step = Latency((timing.mean_ms,)).summary()
    gflops = gflops_per_step(desc["config"], desc["batch"])
    return Record(backend=art.backend, precision=art.precision, model=desc["model"], path=desc["path"],
                  device=f"android{'-gpu' if gpu else ''}:{facts.get('model') or serial}", batch=desc["batch"],
                  load_ms=timing.init_ms, first_ms=timing.first_ms, step=step, size_mb=desc["size_mb"],
                  gflops_per_step=gflops, gflops_per_s=gflops / (timing.mean_ms / 1e3) if gflops else None,
                  host={**host(), "phone": {"serial": serial, **facts}})
