"""One bench target in a fresh process (`python -m edgediff.bench_worker`), so the peak RSS it reports is its own."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import EdgediffError

ERROR_PREFIX = "edgediff bench: error: "


def executorch_threads(threads: int | None) -> int | None:
    """Resize ExecuTorch's shared threadpool to `threads` (when given); the size it now has, if it can say."""
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return threads
    if threads:
        portable_lib._unsafe_reset_threadpool(int(threads))  # safe here: nothing is running yet
    return int(portable_lib._threadpool_get_thread_count())


def threads_used(backend: str, runner, requested: int | None) -> int | None:
    """The thread count the runtime reports for this runner (the request where it cannot say)."""
    try:
        if backend == "eager":
            import torch

            return torch.get_num_threads()
        if backend == "executorch":
            return executorch_threads(None)
        if backend == "openvino":
            return int(runner._request.get_compiled_model().get_property("INFERENCE_NUM_THREADS"))
    except (AttributeError, ImportError, RuntimeError, TypeError, ValueError):
        pass  # a runtime that cannot say: report the request
    return requested


def _command(target, out: Path, *, device, threads, warmup: int, iters: int, fid: int) -> list[str]:
    cmd = [sys.executable, "-m", "edgediff.bench_worker", str(target), "--out", str(out), "--warmup", str(warmup),
           "--iters", str(iters), "--fid", str(fid)]
    cmd += ["--device", device] if device else []
    return cmd + (["--threads", str(threads)] if threads else [])


def _reason(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    mine = [ln[len(ERROR_PREFIX):] for ln in lines if ln.startswith(ERROR_PREFIX)]
    return (mine or lines or ["no output"])[-1]


def measure_in_child(target, *, device: str | None = None, threads: int | None = None, warmup: int = 3,
                     iters: int = 20, fid: int = 0, timeout: float | None = None):
    """`bench.measure_artifact` in a fresh Python process; its Record, with that process's own peak RSS."""
    from .bench import Record

    env = dict(os.environ) | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
    with tempfile.TemporaryDirectory(prefix="edgediff-bench-") as tmp:
        out = Path(tmp) / "record.json"
        cmd = _command(target, out, device=device, threads=threads, warmup=warmup, iters=iters, fid=fid)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise EdgediffError(f"bench of {target} took longer than {timeout:.0f} s in its subprocess") from None
        if proc.returncode != 0 or not out.is_file():
            raise EdgediffError(f"bench of {target} failed in its subprocess (exit {proc.returncode}): "
                                f"{_reason(proc.stderr)}")
        return Record.from_dict(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> int:
    """Measure one target (`bench.measure_artifact`, isolated) and write its Record as JSON to --out."""
    p = argparse.ArgumentParser(prog="python -m edgediff.bench_worker", description=__doc__)
    p.add_argument("target")
    p.add_argument("--out", required=True, help="file to write the Record to (JSON)")
    p.add_argument("--device")
    p.add_argument("--threads", type=int)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--fid", type=int, default=0)
    a = p.parse_args(argv)
    from .bench import measure_artifact
    from .checkpoint import write_text

    try:
        rec = measure_artifact(a.target, device=a.device, threads=a.threads, warmup=a.warmup, iters=a.iters,
                               fid=a.fid, isolated=True)
    except EdgediffError as e:
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr)
        return 2
    write_text(Path(a.out), json.dumps(rec.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
