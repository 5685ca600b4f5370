"""Each artifact on each target this machine has: parity against eager and latency against device_tests/budgets.toml.

Host targets are measured with `edgediff bench`'s protocol in a fresh subprocess (so the row has its peak RSS);
the Android target pushes the .pte and the user's executor_runner over adb and parses its timing lines. Every
measured row is appended to the device report, whatever the verdict; a missing budget means record only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgediff import converters
from edgediff.converters import build, parity
from edgediff.errors import EdgediffError
from edgediff.format import artifact
from edgediff.format.inputs import prepare_inputs
from edgediff.format.precond import Preconditioning
from edgediff.measure import adb, bench, budgets
from edgediff.models import checkpoint

WARMUP, ITERS = 3, 20


def _reference(art: artifact.Artifact, pytestconfig):
    """An eager Runner with the artifact's weights: --model if they match, else its shipped source model, else None."""
    candidates = [pytestconfig.getoption("--model")]
    base = bench.baseline_model([art.path])
    candidates += [base] if base else []
    for name in candidates:
        try:
            md = checkpoint.load(name)
        except EdgediffError:
            continue
        if build.weights_sha256(md.net) == art.source.get("weights_sha256"):
            return converters.get("eager").load(md)
    return None


def _parity_db(runner, reference, art: artifact.Artifact) -> float | None:
    if reference is None:
        return None
    db, _ = parity.measure(runner, reference, art.spec, Preconditioning.from_dict(art.precond),
                           num_classes=art.num_classes)
    return db


def _on_host(art: artifact.Artifact, target: str, reference) -> bench.Record:
    """bench's protocol in a subprocess, then the parity of the same runtime/device against eager."""
    from edgediff.measure.bench_worker import measure_in_child

    device = None if target == "host" else target
    [record] = measure_in_child(art.path, device=device, warmup=WARMUP, iters=ITERS)
    options = {"openvino": {"device": target}, "coreml": {"device": target}}.get(art.backend, {})
    runner = converters.get(art.backend).load(art, **options)
    return dataclasses.replace(record, parity_db=_parity_db(runner, reference, art))


def _on_phone(art: artifact.Artifact, reference, pytestconfig) -> bench.Record:
    """Push and run the .pte with the user's executor_runner; parity on one mid-σ input when it writes outputs."""
    device = adb.pick_device(adb.devices(), pytestconfig.getoption("--adb-serial"))
    runner_bin = adb.find_runner(pytestconfig.getoption("--executor-runner"))
    fixed = parity.fixed_inputs(art.spec, Preconditioning.from_dict(art.precond), num_classes=art.num_classes)[2]
    inputs = list(prepare_inputs(art.spec, art.num_classes, *fixed).values())
    x = fixed[0]
    run = adb.run_pte(art.model_path, runner_bin, device=device, iters=ITERS, warmup=WARMUP, inputs=inputs)
    db = None
    if run.output is not None and reference is not None:
        db = parity.psnr_db(reference(*fixed), run.output.reshape(x.shape))
    return adb.to_record(art, run, parity_db=db, facts=adb.phone_facts(device))


def _on_litert_phone(art: artifact.Artifact, target: str, pytestconfig) -> bench.Record:
    """Push and run the .tflite with LiteRT's benchmark_model (XNNPACK on the CPU, or the GPU delegate)."""
    import litert_android  # device_tests/ is on sys.path (no __init__.py)

    device = adb.pick_device(adb.devices(), pytestconfig.getoption("--adb-serial"))
    binary = litert_android.find_benchmark(pytestconfig.getoption("--benchmark-model"))
    gpu = target == "android-gpu"
    timing, _ = litert_android.run_tflite(art, binary, device=device, gpu=gpu, runs=ITERS, warmup=WARMUP)
    return litert_android.to_record(art, timing, gpu=gpu, facts=adb.phone_facts(device), serial=device.serial)


def test_parity_and_latency_within_budget(artifact_dir, target, budget_table, device_report, pytestconfig, request):
    art = artifact.read(artifact_dir)
    reference = _reference(art, pytestconfig)
    if target.startswith("android"):
        record = _on_litert_phone(art, target, pytestconfig) if art.backend == "litert" else \
            _on_phone(art, reference, pytestconfig)
    else:
        record = _on_host(art, target, reference)
    row = record.to_dict()
    verdict = budgets.verdict(row, budget_table)
    device_report.append({**row, "speedup": None, "test": request.node.name, "budget_verdict": verdict.text()})
    gate = parity.gate_for(art.precision)
    if record.parity_db is not None:
        assert record.parity_db >= gate, f"{record.device}: parity {record.parity_db:.1f} dB < {gate} dB vs eager"
    assert verdict.status != budgets.OVER, verdict.text()
    assert np.isfinite(record.step["p50"]) and record.step["n"] >= (1 if target.startswith("android") else ITERS)
