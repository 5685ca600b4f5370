"""When does int8 pay? ms/step of fp32 vs int8 artifacts on OpenVINO and ExecuTorch as the network and batch grow.

    python benchmarks/int8_scaling.py [--cases mnist-tiny:1,mnist-tiny:8,mnist-small:1] [--threads 2]

Each case is a model config (shipped name; its shipped weights when it has them, else a seeded random init, which
times the same) at a static batch. Artifacts are converted with trajectory calibration, then timed in this process
(min of 3 medians, 3 warm-ups, 20 calls) in one run, so the int8/fp32 ratios are comparable. Latency only: the
quality side is `edgediff compress-report`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgediff.converters import get
from edgediff.converters.convert import convert_model
from edgediff.format import model_dir as model_dirs
from edgediff.measure.latency import min_of_medians
from edgediff.measure.report import markdown_table
from edgediff.models import checkpoint
from edgediff.models.unet import UNet, flops_per_step

BACKENDS = ("openvino", "executorch")


def model_dir(name: str, work: Path) -> tuple[str, bool]:
    """A model dir for `name`: the shipped one if it has weights, else a seeded random init of its config."""
    path = model_dirs.resolve(name)
    if (path / checkpoint.WEIGHTS_FILE).is_file():
        return name, True
    meta = model_dir.read_config(path)
    torch.manual_seed(0)
    net = UNet(checkpoint.load(path, weights=False).unet)
    return str(checkpoint.save(work / f"{name}-random", net, {k: v for k, v in meta.items() if k != "unet"})), False


def time_step(art, batch: int) -> float:
    runner = get(art.backend).load(art)
    shape = art.spec["x"][0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    t = np.full(batch, 0.25, np.float32)
    label = np.zeros(batch, np.int64) if "label" in art.spec else None
    return min_of_medians(lambda: runner(x, t, label), warmup=3, iters=20)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="mnist-tiny:1,mnist-tiny:8,mnist-small:1")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    work = Path(tempfile.mkdtemp(prefix="int8-scaling-"))
    rows = []
    for case in a.cases.split(","):
        name, batch = case.split(":")
        batch = int(batch)
        model, trained = model_dir(name, work)
        md = checkpoint.load(model)
        gflops = flops_per_step(md.net, md.unet) / 1e9 * batch
        for backend in BACKENDS:
            ms = {}
            for precision in ("fp32", "int8"):
                art = convert_model(model, backend, work / f"{name}-b{batch}-{backend}-{precision}",
                                    precision=precision, batch=batch)
                ms[precision] = time_step(art, batch)
            rows.append([name + ("" if trained else " (random init)"), batch, f"{gflops:.2f}", backend,
                         f"{ms['fp32']:.2f}", f"{ms['int8']:.2f}", f"{ms['fp32'] / ms['int8']:.2f}"])
            print(rows[-1], flush=True)
    print(markdown_table(["model", "batch", "GFLOPs/step", "backend", "fp32 ms/step", "int8 ms/step",
                          "int8 speed-up"], rows))


if __name__ == "__main__":
    main()
