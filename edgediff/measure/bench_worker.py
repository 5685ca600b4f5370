"""One bench target in a fresh process (`python -m edgediff.measure.bench_worker`), so the peak RSS it reports is
its own."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from edgediff.errors import EdgediffError
from edgediff.format.files import write_text
from edgediff.measure.record import Record

ERROR_PREFIX = "edgediff bench: error: "


def _command(target, out: Path, *, device, threads, warmup: int, iters: int, fid: int) -> list[str]:
    cmd = [sys.executable, "-m", "edgediff.measure.bench_worker", str(target), "--out", str(out), "--warmup",
           str(warmup), "--iters", str(iters), "--fid", str(fid)]
    cmd += ["--device", device] if device else []
    return cmd + (["--threads", str(threads)] if threads else [])


def _reason(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    mine = [ln[len(ERROR_PREFIX):] for ln in lines if ln.startswith(ERROR_PREFIX)]
    return (mine or lines or ["no output"])[-1]


def measure_in_child(target, *, device: str | None = None, threads: int | None = None, warmup: int = 3,
                     iters: int = 20, fid: int = 0, timeout: float | None = None) -> list[Record]:
    """`target.measure_target` (or `target_pipeline.measure_pipeline`) in a fresh Python process; its Records (one
    for a model or artifact, one per component + the image row for a text-to-image pipeline), with that process's
    own peak RSS."""
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
        return [Record.from_dict(d) for d in json.loads(out.read_text())]


def main(argv: list[str] | None = None) -> int:
    """Measure one target (isolated) and write its Records as a JSON list to --out."""
    p = argparse.ArgumentParser(prog="python -m edgediff.measure.bench_worker", description=__doc__)
    p.add_argument("target")
    p.add_argument("--out", required=True, help="file to write the Record to (JSON)")
    p.add_argument("--device")
    p.add_argument("--threads", type=int)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--fid", type=int, default=0)
    a = p.parse_args(argv)
    from edgediff.measure import target_pipeline  # the runtimes load in this fresh process only
    from edgediff.measure.target import measure_target

    try:
        kw = {"device": a.device, "threads": a.threads, "warmup": a.warmup, "iters": a.iters, "isolated": True}
        if target_pipeline.is_pipeline(a.target):
            recs = target_pipeline.measure_pipeline(a.target, **kw)
        else:
            recs = [measure_target(a.target, fid=a.fid, **kw)]
    except EdgediffError as e:
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr)
        return 2
    write_text(Path(a.out), json.dumps([r.to_dict() for r in recs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
