"""Where an OpenVINO artifact's time goes: per-op-type share of one inference from the CPU plugin's counters.

    python benchmarks/openvino_profile.py ART_DIR [ART_DIR ...] [--iters 200] [--threads N]

For each artifact: wall ms per inference (median), the sum of the plugin's per-node times, and the op types
(Convolution, Reorder, Subgraph, MVN, ...) with their share, plus the kernels convolutions ran on (brgconv = f32,
I8 = int8). It explains int8 gains: only the convolution/matmul share can shrink, so when layout reorders and
normalisation take half the time, int8 cannot make a step 1.5× faster.
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np


def profile(art_dir: str, *, iters: int, threads: int | None) -> None:
    from edgediff.converters import openvino
    from edgediff.format import artifact

    art = artifact.open_artifact(art_dir, backend="openvino")
    config = {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": openvino.HINTS.get(art.precision, "f32")}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = openvino.core().compile_model(str(art.model_path), "CPU", config)
    request = compiled.create_infer_request()
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(list(i.get_shape())).astype(i.get_element_type().to_dtype())
              if i.get_element_type().is_real() else np.zeros(list(i.get_shape()), i.get_element_type().to_dtype())
              for i in compiled.inputs]
    for _ in range(20):
        request.infer(inputs)
    by_type, kernels, walls = collections.Counter(), collections.Counter(), []
    for _ in range(iters):
        t0 = time.perf_counter()
        request.infer(inputs)
        walls.append(time.perf_counter() - t0)
        for p in request.profiling_info:
            us = p.real_time.total_seconds() * 1e6 / iters
            by_type[p.node_type] += us
            if p.node_type in ("Convolution", "MatMul", "FullyConnected"):
                kernels[f"{p.node_type} [{p.exec_type}]"] += us
    total = sum(by_type.values())
    print(f"\n{art_dir}: {art.precision}, wall {np.median(walls) * 1e3:.2f} ms/inference (median of {iters}), "
          f"plugin node time {total / 1e3:.2f} ms")
    print("| op type | ms | share |\n|---|---|---|")
    for name, us in by_type.most_common(10):
        print(f"| {name} | {us / 1e3:.3f} | {100 * us / total:.1f}% |")
    print("kernels: " + ", ".join(f"{k} {us / 1e3:.3f} ms" for k, us in kernels.most_common(6)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifacts", nargs="+")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--threads", type=int)
    a = p.parse_args()
    for d in a.artifacts:
        profile(d, iters=a.iters, threads=a.threads)


if __name__ == "__main__":
    main()
