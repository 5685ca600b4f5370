"""Where an artifact's time goes: per-op-type share of one inference from the runtime's own profiler, on
OpenVINO (the CPU plugin's per-node counters) and ExecuTorch (ETDump events, which include each XNNPACK
operator inside the delegate).

    python benchmarks/op_profile.py ART_DIR [ART_DIR ...] [--iters 200] [--threads N] [--top 12]

ART_DIR is an artifact (artifact.json inside; for a pipeline, one component: PIPELINE/unet). For each: wall ms per
inference (median), the sum of the runtime's per-op times, the op types (OpenVINO: Convolution, Reorder, MVN,
ScaledDotProductAttention, ...; ExecuTorch: XNNPACK's Convolution (NHWC, F32) IGEMM, Batch Matrix Multiply,
Softmax, ... and any op left outside the delegate) with ms and share, and OpenVINO's convolution kernels (brgconv
= f32, I8 = int8). Comparing two backends' tables on the same model shows which op types hold the gap; it also
explains int8 gains: only the convolution/matmul share can shrink.
"""

from __future__ import annotations

import argparse
import collections
import re
import tempfile
import time
from pathlib import Path

import numpy as np


def spec_inputs(spec: dict) -> list[np.ndarray]:
    """Seeded inputs of the artifact's static spec: floats ~ N(0, 1), integers (labels, token ids) zero."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(dtype) if np.dtype(dtype).kind == "f" else np.zeros(shape, dtype)
            for shape, dtype in spec.values()]


def openvino_profile(art, *, iters: int, threads: int | None):
    """(wall ms per inference, {op type: ms}, {convolution kernel: ms}) from the CPU plugin's counters."""
    from edgediff.converters import openvino

    config = {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": openvino.HINTS.get(art.precision, "f32")}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    request = openvino.core().compile_model(str(art.model_path), "CPU", config).create_infer_request()
    inputs = spec_inputs(art.spec)
    for _ in range(min(20, iters)):
        request.infer(inputs)
    by_type, kernels, walls = collections.Counter(), collections.Counter(), []
    for _ in range(iters):
        t0 = time.perf_counter()
        request.infer(inputs)
        walls.append(time.perf_counter() - t0)
        for p in request.profiling_info:
            ms = p.real_time.total_seconds() * 1e3 / iters
            by_type[p.node_type] += ms
            if p.node_type in ("Convolution", "MatMul", "FullyConnected"):
                kernels[f"{p.node_type} [{p.exec_type}]"] += ms
    return float(np.median(walls)) * 1e3, by_type, kernels


def executorch_profile(art, *, iters: int, threads: int | None):
    """(wall ms per inference, {op type: ms}, {}) from ETDump: XNNPACK's per-operator events inside the delegate
    (the "#n" instance suffix dropped) and every operator outside it, each at its median over `iters` runs."""
    import torch
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    from edgediff.converters import executorch

    executorch.threadpool_size(threads)
    data = art.model_path.with_name(executorch.DATA_FILE)
    program = Runtime.get().load_program(art.model_path, data_path=data if data.is_file() else None,
                                         enable_etdump=True, debug_buffer_size=0)
    method = program.load_method("forward")
    inputs = [torch.from_numpy(a) for a in spec_inputs(art.spec)]
    method.execute(inputs)  # warm-up (also profiled; medians below)
    walls = []
    for _ in range(iters):
        t0 = time.perf_counter()
        method.execute(inputs)
        walls.append(time.perf_counter() - t0)
    by_type = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "run.etdp"
        program.write_etdump_result_to_file(str(dump), str(Path(tmp) / "debug.bin"))
        for block in Inspector(etdump_path=str(dump)).event_blocks:
            if block.name != "Execute":
                continue  # program and method loading
            for e in block.events:
                if e.perf_data is None or e.name in ("DELEGATE_CALL", "Method::execute") or \
                        e.name.startswith("native_call_"):
                    continue  # containers of the events counted, or the same op counted twice
                name = e.op_types[0] if e.name == "OPERATOR_CALL" and e.op_types else e.name
                by_type[re.sub(r" #\d+$", "", name)] += e.perf_data.p50
    return float(np.median(walls)) * 1e3, by_type, collections.Counter()


PROFILERS = {"openvino": openvino_profile, "executorch": executorch_profile}


def profile(art_dir: str, *, iters: int, threads: int | None, top: int) -> None:
    from edgediff.format import artifact

    art = artifact.read(art_dir)
    if art.backend not in PROFILERS:
        raise SystemExit(f"{art_dir}: a {art.backend} artifact; op_profile.py profiles {', '.join(PROFILERS)}")
    art = artifact.open_artifact(art_dir, backend=art.backend)
    wall, by_type, kernels = PROFILERS[art.backend](art, iters=iters, threads=threads)
    total = sum(by_type.values())
    print(f"\n{art_dir}: {art.backend} {art.precision}, wall {wall:.2f} ms/inference (median of {iters}), "
          f"sum of per-op times {total:.2f} ms")
    print("| op type | ms | share |\n|---|---|---|")
    for name, ms in by_type.most_common(top):
        print(f"| {name} | {ms:.3f} | {100 * ms / total:.1f}% |")
    if kernels:
        print("kernels: " + ", ".join(f"{k} {ms:.3f} ms" for k, ms in kernels.most_common(6)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifacts", nargs="+")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--threads", type=int)
    p.add_argument("--top", type=int, default=12, help="op types listed per artifact")
    a = p.parse_args()
    from edgediff.errors import EdgediffError

    for d in a.artifacts:
        try:
            profile(d, iters=a.iters, threads=a.threads, top=a.top)
        except EdgediffError as e:  # not an artifact, a tampered one, a missing runtime: one line, exit 1
            raise SystemExit(f"op_profile.py: {e}") from None


if __name__ == "__main__":
    main()
