"""ExecuTorch on an Android phone over adb: find a device, push the .pte and an executor_runner, run, parse timings.

The phone needs no edgediff: the user supplies an `executor_runner` binary built for it (ExecuTorch's
examples/portable/executor_runner, with the XNNPACK delegate linked in), by path or in $EDGEDIFF_EXECUTOR_RUNNER.
Its timing lines come from ET_LOG: on stderr with the posix PAL ("I 00:00:01.234567 executorch:executor_runner.cpp:
NNN] Model executed successfully 20 time(s) in 81.2 ms."), in logcat (tag ExecuTorch) with the android PAL; both
are read.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.measure.latency import Latency, host
from edgediff.measure.record import Record
from edgediff.measure.target import describe, gflops_per_step

ADB_ENV, RUNNER_ENV = "ADB", "EDGEDIFF_EXECUTOR_RUNNER"
REMOTE_DIR = "/data/local/tmp/edgediff"
TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in ([0-9.]+) ms")
ITERATION = re.compile(r"Iteration (\d+) of (\d+): ([0-9.]+) ms")
DETAIL = re.compile(r"^[a-z_]+:\S+$")
LOADED = re.compile(r"Model loaded in ([0-9.]+) ms")
THREADS = re.compile(r"Resetting threadpool with num threads = (\d+)")
GETPROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")
PROPS = {"ro.product.manufacturer": "maker", "ro.product.model": "model", "ro.soc.model": "soc",
         "ro.build.version.release": "android", "ro.product.cpu.abi": "abi"}
LOG_ERROR = re.compile(r"^(?:[EF] [0-9:.]+ executorch:\S+\] |.*\s[EF] ExecuTorch: )(.*)$")
NOT_READY = {"unauthorized": "accept the USB debugging prompt on the phone",
             "offline": "reconnect the cable or run `adb reconnect`",
             "no permissions": "fix the udev rules for the phone (see `adb devices` help)"}


class AdbError(EdgediffError):
    """adb, a phone or the executor_runner is missing or failed; the message says which and what to do."""


@dataclass(frozen=True)
class Device:
    """One line of `adb devices -l`: serial, state (device | unauthorized | offline | ...) and key:value details."""

    serial: str
    state: str
    details: dict

    @property
    def ready(self) -> bool:
        return self.state == "device"

    def describe(self) -> str:
        name = self.details.get("model") or self.details.get("product") or ""
        return f"{self.serial} ({name.replace('_', ' ')})" if name else self.serial


def parse_devices(text: str) -> list[Device]:
    """Devices from `adb devices [-l]` output; daemon notices and the header line are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("*", "List of devices", "adb server", "adb: ")):
            continue
        serial, *words = line.split()
        rest = " ".join(words)
        state = "no permissions" if rest.startswith("no permissions") else (words[0] if words else "unknown")
        details = dict(w.split(":", 1) for w in words if DETAIL.match(w))
        out.append(Device(serial, state, details))
    return out


def find_adb(adb: str | None = None) -> str:
    """The adb executable: `adb`, else $ADB, else the one on PATH; AdbError naming what to install."""
    found = adb or os.environ.get(ADB_ENV) or shutil.which("adb")
    if not found or not (shutil.which(found) or Path(found).is_file()):
        raise AdbError("adb not found (not on PATH and $ADB unset): install Android platform-tools and connect a "
                       "phone with USB debugging on to run ExecuTorch on Android")
    return found


def devices(adb: str | None = None) -> list[Device]:
    """Every device `adb devices -l` lists (ready or not)."""
    return parse_devices(_run([find_adb(adb), "devices", "-l"], timeout=30))


def pick_device(listed: list[Device], serial: str | None = None) -> Device:
    """The ready device (the one named `serial` if given); AdbError saying why none is usable."""
    if serial:
        listed = [d for d in listed if d.serial == serial]
    ready = [d for d in listed if d.ready]
    if ready:
        return ready[0]
    if not listed:
        which = f"device {serial!r}" if serial else "Android device"
        raise AdbError(f"no {which} listed by `adb devices`: connect a phone with USB debugging on")
    hints = "; ".join(f"{d.serial} is {d.state}: {NOT_READY.get(d.state, 'check the phone')}" for d in listed)
    raise AdbError(f"no usable Android device: {hints}")


def find_runner(path: str | os.PathLike | None = None) -> Path:
    """The user's executor_runner binary: `path`, else $EDGEDIFF_EXECUTOR_RUNNER; AdbError when missing."""
    given = path or os.environ.get(RUNNER_ENV)
    if not given:
        raise AdbError(f"ExecuTorch on Android needs an executor_runner built for the phone: pass "
                       f"--executor-runner PATH or set ${RUNNER_ENV}")
    if not Path(given).is_file():
        raise AdbError(f"executor_runner {given} does not exist (from --executor-runner or ${RUNNER_ENV})")
    return Path(given)


@dataclass(frozen=True)
class RunnerTiming:
    """What executor_runner reported: executions, their total time, per-iteration times (newer runners), load."""

    count: int
    total_ms: float
    iterations: tuple[float, ...] = ()
    load_ms: float | None = None
    threads: int | None = None

    def latency(self, warmup: int = 0) -> Latency:
        """Per-iteration times after `warmup`; a runner without per-iteration lines gives one sample, the mean."""
        if self.iterations:
            kept = self.iterations[warmup:] if len(self.iterations) > warmup else self.iterations
            return Latency(tuple(kept))
        return Latency((self.total_ms / self.count,))


def parse_runner_output(text: str) -> RunnerTiming:
    """Timings from executor_runner's log (stderr or logcat); AdbError with its last error line when it failed."""
    totals = TOTAL.findall(text)
    if not totals:
        errors = [m.group(1) for line in text.splitlines() if (m := LOG_ERROR.match(line.strip()))]
        last = errors[-1] if errors else next((ln for ln in reversed(text.splitlines()) if ln.strip()), "no output")
        raise AdbError(f"executor_runner did not report a successful run: {last.strip()}")
    count, total = totals[-1]
    iterations = tuple(float(ms) for _, _, ms in ITERATION.findall(text))
    loads, threads = LOADED.findall(text), THREADS.findall(text)
    return RunnerTiming(int(count), float(total), iterations[-int(count):] if iterations else (),
                        float(loads[-1]) if loads else None, int(threads[-1]) if threads else None)


def _run(cmd: list[str], *, timeout: float = 120, check: bool = True) -> str:
    """stdout + stderr of `cmd`; AdbError with its last line when it fails (and `check`)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AdbError(f"`{shlex.join(cmd)}` failed: {e}") from None
    if check and proc.returncode != 0:
        out = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise AdbError(f"`{shlex.join(cmd)}` exited with {proc.returncode}: {out[-1] if out else 'no output'}")
    return proc.stdout + proc.stderr


@dataclass(frozen=True)
class PhoneRun:
    """One executor_runner run on a phone: its timings, the per-step Latency and the output (when it wrote one)."""

    device: Device
    timing: RunnerTiming
    latency: Latency
    output: np.ndarray | None
    log: str


def run_pte(pte: str | os.PathLike, runner: str | os.PathLike, *, device: Device, adb: str | None = None,
            iters: int = 20, warmup: int = 3, threads: int | None = None, inputs: list[np.ndarray] | None = None,
            remote_dir: str = REMOTE_DIR) -> PhoneRun:
    """Push, run warmup + iters executions on `inputs` (a runner without --inputs: all ones, output None), parse."""
    base = [find_adb(adb), "-s", device.serial]
    _run([*base, "shell", "mkdir", "-p", remote_dir])
    _run([*base, "push", str(pte), f"{remote_dir}/model.pte"])
    _run([*base, "push", str(runner), f"{remote_dir}/executor_runner"])
    _run([*base, "shell", "chmod", "755", f"{remote_dir}/executor_runner"])
    args = ["--model_path", "model.pte", "--num_executions", str(warmup + iters)]
    args += ["--cpu_threads", str(threads)] if threads else []
    with tempfile.TemporaryDirectory(prefix="edgediff-adb-") as tmp:
        if inputs is not None:
            io = ["--inputs", _push_inputs(base, inputs, Path(tmp), remote_dir), "--output_file", "out"]
            log = _execute(base, args + io, remote_dir)
            if "unknown command line flag" not in log:
                timing = parse_runner_output(log)
                return PhoneRun(device, timing, timing.latency(warmup), _pull_output(base, Path(tmp), remote_dir),
                                log)
        log = _execute(base, args, remote_dir)
    timing = parse_runner_output(log)
    return PhoneRun(device, timing, timing.latency(warmup), None, log)


def _execute(base: list[str], args: list[str], remote_dir: str) -> str:
    """Run executor_runner in `remote_dir` with a fresh logcat; its stdout, stderr and ExecuTorch logcat lines."""
    _run([*base, "logcat", "-c"], check=False)
    cmd = f"cd {shlex.quote(remote_dir)} && rm -f out-0.bin && ./executor_runner {shlex.join(args)}"
    log = _run([*base, "shell", cmd], timeout=600, check=False)
    return log + _run([*base, "logcat", "-d", "-s", "ExecuTorch"], check=False)


def _push_inputs(base: list[str], inputs: list[np.ndarray], tmp: Path, remote_dir: str) -> str:
    """Write each input as raw bytes (executor_runner --inputs), push them; the comma-separated remote names."""
    names = []
    for i, array in enumerate(inputs):
        name = f"input{i}.bin"
        (tmp / name).write_bytes(np.ascontiguousarray(array).tobytes())
        _run([*base, "push", str(tmp / name), f"{remote_dir}/{name}"])
        names.append(name)
    return ",".join(names)


def _pull_output(base: list[str], tmp: Path, remote_dir: str) -> np.ndarray:
    """executor_runner wrote output 0 as raw float32 to out-0.bin: pull it."""
    _run([*base, "pull", f"{remote_dir}/out-0.bin", str(tmp / "out-0.bin")])
    return np.fromfile(tmp / "out-0.bin", dtype=np.float32)


def parse_getprop(text: str) -> dict:
    """The phone facts a report row names (maker, model, SoC, Android version, ABI) from `adb shell getprop`."""
    props = dict(m.groups() for line in text.splitlines() if (m := GETPROP.match(line.strip())))
    return {name: props[key] for key, name in PROPS.items() if props.get(key)}


def phone_facts(device: Device, adb: str | None = None) -> dict:
    """parse_getprop of the phone (empty where getprop fails)."""
    return parse_getprop(_run([find_adb(adb), "-s", device.serial, "shell", "getprop"], check=False))


def to_record(art, run: PhoneRun, *, parity_db: float | None, facts: dict):
    """A bench Record for a phone run: network latency only (the sampler runs on the host), device android:MODEL."""

    desc, step = describe(art.path), run.latency.summary()
    batch, it = desc["batch"], run.timing.iterations
    gflops = gflops_per_step(desc["config"], batch)
    return Record(backend=art.backend, precision=art.precision, model=desc["model"], path=desc["path"],
                  device=f"android:{facts.get('model') or run.device.serial}", batch=batch,
                  threads=run.timing.threads, threads_requested=None, cpu_util=None, load_ms=run.timing.load_ms,
                  first_ms=it[0] if it else None, step=step, image_ms=None, sampler_overhead_ms=None,
                  sampler_overhead_frac=None, calls_per_image=None, size_mb=desc["size_mb"], peak_rss_mb=None,
                  parity_db=parity_db, fid_proxy=None, fid_floor=None, fid_n=None, gflops_per_step=gflops,
                  gflops_per_s=gflops / (step["p50"] / 1e3) if gflops else None, sampler={},
                  host={**host(), "phone": {"serial": run.device.serial, **facts}})
