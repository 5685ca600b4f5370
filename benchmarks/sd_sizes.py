"""Real sizes (issue #19): SD-class components at 512² and 256², converted by edgediff and by the tools people would
pick instead, in one resumable run and one table.

    python benchmarks/sd_sizes.py [--sizes sd15,bk-sdm-tiny,sd21-base] [--resolution 512 256]
        [--backends openvino,executorch,coreml] [--precisions fp32,int8] [--peers eager,compile,optimum]
        [--decoders vae,taesd] [--steps 1 4 20] [--scale 1] [--work runs/sd_sizes] [--only TEXT]

Random-weight components (latency does not depend on trained weights) are built, seeded, from the published
configs in benchmarks/sd_configs/ (README.md there: sources and parameter counts) and saved as a diffusers folder.
Per component × backend × precision: conversion wall time and peak RSS, artifact size, ms per call (min of
medians on shared inputs), PSNR against diffusers eager on the same inputs; per image: seconds at 1, 4 and 20 steps
(20 with classifier-free guidance), with the SD VAE decoder and with TAESD. Peers: diffusers eager and
torch.compile (the PyTorch user's baseline) and optimum-intel (`--peers optimum`: its OpenVINO export of the same
folder with a static reshape, and its hybrid int8 calibrated on a local prompt list). optimum-intel 2.2.0 needs
transformers < 5.6 and huggingface-hub < 1.22, which edgediff's environment does not have, so the script creates
its own environment for it (runs/venv-optimum, git-ignored and outside the folders the repo's tests scan; exact
pins in OPTIMUM_PINS; pip, network-bound, once).

Each cell runs in its own process (a cell killed for memory is recorded as killed) and is stored in the run
record as it finishes (`--record`, default benchmarks/sd_sizes_runs/<cpu>.json, kept in the repo so a run's
numbers outlive its multi-GB work folder); a rerun skips finished cells (`--retry-failed` reruns failed ones).
A record holds one machine's run: another CPU starts its own. The tables go beside the record (.md).
`--scale 16` divides every width by 16 for a quick functional run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sd_sizes_build import SIZES
from sd_sizes_plan import EDGEDIFF_BACKENDS, PEERS, Cell, Plan, cells
from sd_sizes_table import fill_psnr, render
from sd_sizes_timing import RESULT

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OPTIMUM_ENV = REPO / "runs" / "venv-optimum"
OPTIMUM_PINS = ("optimum-intel[openvino,diffusers]==2.2.0", "optimum==2.3.0", "openvino==2026.4.1",
                "openvino-tokenizers==2026.4.1.0", "nncf==3.4.0", "torch==2.13.0", "numpy==2.4.6",
                "transformers==5.5.4", "diffusers==0.39.0", "huggingface-hub==1.21.0", "torchvision==0.28.0")
WORKERS = {"main": HERE / "sd_sizes_cells.py", "optimum": HERE / "sd_sizes_optimum.py"}


def ensure_optimum_env(path: Path = OPTIMUM_ENV) -> Path:
    """The peer environment's python, creating it with OPTIMUM_PINS (and edgediff's constraints) when missing."""
    python = path / "bin" / "python"
    if python.is_file():
        return python
    print(f"creating {path} for optimum-intel (pip, network-bound) …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    (path / ".gitignore").write_text("*\n")  # never committed
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"), *OPTIMUM_PINS],
                   check=True)
    # PyPI's torchvision is built against CUDA torch (its _C.so needs libc10_cuda.so); beside the CPU torch it
    # fails to register torchvision::nms and transformers then cannot import AutoProcessor, which optimum-intel
    # imports. The CPU build is not on PyPI and the diffusion path never uses torchvision: remove it.
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "torchvision"], check=True)
    return python


def _one_line(text: str) -> str:
    """The most telling line of a worker's stderr: its last error line, else its last line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error:" in ln]
    return ((errors or lines or ["no output"])[-1])[:200]


def run_cell(cell: Cell, python: Path, timeout: float, log: Path) -> dict:
    """Run one cell in its own process group; its result, or how it ended (failed, killed, timed out)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    proc = subprocess.Popen([str(python), str(WORKERS[cell.env]), json.dumps(cell.spec)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        log.write_text(out + "\n--- stderr ---\n" + err)
        return {"status": "timeout", "reason": f"timed out after {timeout:.0f} s", "wall_s": timeout}
    wall = round(time.perf_counter() - started, 1)
    log.write_text(out + "\n--- stderr ---\n" + err)
    found = [ln[len(RESULT):] for ln in out.splitlines() if ln.startswith(RESULT)]
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        why = " (out of memory?)" if proc.returncode == -signal.SIGKILL else ""
        return {"status": "killed", "reason": f"killed by {name}{why}", "wall_s": wall}
    if proc.returncode != 0 or not found:
        return {"status": "failed", "reason": _one_line(err), "wall_s": wall}
    return {"status": "ok", "wall_s": wall, **json.loads(found[-1])}


def default_record(cpu: str, scale: int) -> Path:
    """benchmarks/sd_sizes_runs/<cpu slug>[-s<scale>].json: one file per machine (and per --scale)."""
    slug = "-".join("".join(c if c.isalnum() else " " for c in cpu.lower()).split())[:60] or "cpu"
    return HERE / "sd_sizes_runs" / (slug + (f"-s{scale}" if scale != 1 else "") + ".json")


def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"meta": {}, "cells": {}}


def save_results(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _blocked(cell: Cell, done: dict) -> str | None:
    bad = next((n for n in cell.needs if done.get(n, {}).get("status") != "ok"), None)
    return None if bad is None else f"needs {bad} ({done.get(bad, {}).get('status', 'not run')})"


def run_all(todo: list[Cell], data: dict, path: Path, args) -> None:
    """Run every cell not finished before, storing each result as it comes; print progress."""
    done = data["cells"]
    pythons = {"main": Path(sys.executable)}
    for i, cell in enumerate(todo, 1):
        head = f"[{i}/{len(todo)}] {cell.key}"
        previous = done.get(cell.key)
        if cell.reason or (previous and (previous["status"] == "ok" or not args.retry_failed)):
            print(f"{head}: {cell.reason or 'done before (' + previous['status'] + ')'}", flush=True)
            continue
        blocked = _blocked(cell, done)
        if blocked:
            print(f"{head}: skipped, {blocked}", flush=True)
            continue
        if cell.env not in pythons:
            pythons[cell.env] = ensure_optimum_env()
        print(f"{head} …", end=" ", flush=True)
        log = args.work / "logs" / (cell.key.replace("/", "_").replace("@", "-") + ".log")
        result = run_cell(cell, pythons[cell.env], args.timeout, log)
        done[cell.key] = result
        data["meta"]["runtime_s"] = round(sum(r.get("wall_s", 0) for r in done.values()), 1)
        save_results(path, data)
        print(f"{result['status']} ({result['wall_s']} s)" + (f" — {result['reason']}" if "reason" in result
                                                                else ""), flush=True)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    csv = lambda s: tuple(x for x in s.split(",") if x)  # noqa: E731
    p.add_argument("--sizes", type=csv, default=tuple(SIZES), help=f"of {', '.join(SIZES)}")
    p.add_argument("--resolution", type=int, nargs="+", default=[512, 256])
    p.add_argument("--backends", type=csv, default=EDGEDIFF_BACKENDS, help="edgediff backends")
    p.add_argument("--precisions", type=csv, default=("fp32", "int8"))
    p.add_argument("--peers", type=csv, default=("eager", "compile"), help=f"of {', '.join(PEERS)}")
    p.add_argument("--decoders", type=csv, default=("vae", "taesd"))
    p.add_argument("--steps", type=int, nargs="+", default=[1, 4, 20], choices=[1, 4, 20])
    p.add_argument("--scale", type=int, default=1, help="divide every width by this (16: quick functional run)")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "sd_sizes", help="folders and artifacts (GBs)")
    p.add_argument("--record", type=Path, help="the run's results JSON (default: benchmarks/sd_sizes_runs/<cpu>.json)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--budget", type=float, default=60.0, help="seconds of timed calls per cell (about)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds before a cell is killed")
    p.add_argument("--optimum-samples", type=int, help="optimum hybrid int8 calibration UNet calls (default: its own)")
    p.add_argument("--check-steps", type=int, default=10, help="sampler steps of edgediff's recorded images (parity "
                   "inputs, int8 calibration: 2 prompts × steps × 2 guidance branches UNet calls, end-to-end check)")
    p.add_argument("--only", type=csv, default=(),
                   help="run only cells whose key contains one of these texts (the table still shows all)")
    p.add_argument("--retry-failed", action="store_true")
    a = p.parse_args(argv)
    for name, given, known in (("size", a.sizes, SIZES), ("backend", a.backends, EDGEDIFF_BACKENDS),
                               ("peer", a.peers, PEERS)):
        if set(given) - set(known):
            p.error(f"unknown {name} {', '.join(sorted(set(given) - set(known)))}; expected {', '.join(known)}")
    return a


def main(argv=None) -> int:
    a = parse(argv)
    a.work = a.work.resolve()
    a.work.mkdir(parents=True, exist_ok=True)
    plan = Plan(sizes=a.sizes, resolutions=tuple(a.resolution), backends=a.backends, precisions=a.precisions,
                peers=("eager", *[x for x in a.peers if x != "eager"]), decoders=a.decoders, steps=tuple(a.steps),
                scale=a.scale, work=a.work, threads=a.threads, budget=a.budget, samples=a.optimum_samples,
                check_steps=a.check_steps)
    planned = cells(plan)
    from edgediff.measure.latency import host

    here = host()
    path = a.record or default_record(here["cpu"], a.scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = load_results(path)
    for key, now in (("scale", a.scale), ("cpu", here["cpu"])):
        was = data["meta"].get(key, data["meta"].get("host", {}).get(key, now))
        if was != now:
            raise SystemExit(f"{path} holds a run with {key} {was!r}, not {now!r}; give another --record")
    data["meta"].update(scale=a.scale, threads=a.threads, host=here)
    run_all([c for c in planned if not a.only or any(t in c.key for t in a.only)], data, path, a)
    fill_psnr(planned, data["cells"])
    save_results(path, data)
    table = render(planned, data["cells"], data["meta"])
    path.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
