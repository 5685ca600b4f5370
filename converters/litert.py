"""LiteRT backend (formerly TensorFlow Lite): litert-torch → .tflite flatbuffer, run by the LiteRT interpreter with
its XNNPACK delegate on the CPU — the runtime Android apps (and MediaPipe's image generator) load.

fp32 keeps float32 weights; fp16 stores float16 weights (ai-edge-quantizer's float casting, computed in float32);
w8 stores int8 per-channel weights (weight-only, float activations); int8 is static int8 convolutions (weights and
activations, ai-edge-quantizer's min/max recipe) calibrated on the same trajectory inputs as the other int8 paths,
with everything else float. Inputs are named args_0.. in spec order, the output output_0.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from edgediff.converters import build
from edgediff.converters import calibration as calibrate
from edgediff.converters.base import ModuleBackend
from edgediff.errors import InputError, require
from edgediff.format import artifact
from edgediff.format.inputs import SpecRunner, prepare_inputs

MODEL_FILE = "model.tflite"
PRECISIONS = ("fp32", "fp16", "w8", "int8")
CALIBRATED = ("int8",)
SIGNATURE = "serving_default"
FLATBUFFER_ID = b"TFL3"  # bytes 4..8 of every .tflite file
# int8 quantizes the convolutions (weights and activations); the rest stays float. On the default model int8 on every
# supported op (static_wi8_ai8) gave 5 dB parity and 68 XNNPACK partitions, convolutions + linear layers 17 dB,
# convolutions only 24 dB (41 dB at low σ, 24 dB at σ ≥ 10): recorded, not gated; w8 is the high-parity choice
INT8_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
# sensitive layers stay float in int8 artifacts, as in the other backends' int8 (matched in litert-torch's layer names)
KEEP_FLOAT = r".*_(conv_in|conv_out|time_mlp|w_mlp|label_emb)([;/].*)?$"


def convert(net, spec: artifact.InputSpec, out_dir, *, precision: str = "fp32", calibration=None, precond,
            sampler_defaults: dict | None = None, source: dict | None = None) -> artifact.Artifact:
    """Convert `net` to a .tflite artifact in `out_dir`, parity-gated on this machine's CPU (XNNPACK)."""
    header = build.header_for(net, spec, backend=BACKEND.name, precision=precision, precond=precond,
                              sampler_defaults=sampler_defaults, source=source,
                              tools=("litert-torch", "ai-edge-litert", "ai-edge-quantizer"),
                              options=calibrate.options_for(precision, calibration, needs=CALIBRATED))
    return build.build(net, out_dir, header, lower=lambda tmp: _lower(net, header, tmp, calibration),
                       load_staged=lambda file: LiteRTRunner(file, header))


def _lower(net, header: artifact.Header, tmp: Path, calibration=None) -> tuple[str, dict]:
    """litert_torch.convert with static shapes → (quantize) → .tflite; return (file, op coverage)."""
    import torch

    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # its per-pass log; edgediff shows its own progress
    litert_torch = require("litert_torch", "litert")
    with torch.no_grad():
        edge = litert_torch.convert(net.eval(), build.example_inputs(header.spec))
    float_file = tmp / "float.tflite" if header.precision != "fp32" else tmp / MODEL_FILE
    edge.export(str(float_file))
    if header.precision != "fp32":
        _quantize(float_file, tmp / MODEL_FILE, header, calibration)
        float_file.unlink()
    if calibration is not None:
        calibrate.save(tmp / calibrate.CALIBRATION_FILE, calibration)
    return MODEL_FILE, op_coverage(tmp / MODEL_FILE)


def _quantize(float_file: Path, out_file: Path, header: artifact.Header, calibration) -> None:
    """fp16 weights (float casting) or static int8 (min/max, calibrated) with ai-edge-quantizer."""
    aeq = require("ai_edge_quantizer", "litert")
    manager = require("ai_edge_quantizer.recipe_manager", "litert")
    algorithms = require("ai_edge_quantizer.algorithm_manager", "litert")
    ops = require("ai_edge_quantizer.qtyping", "litert").TFLOperationName.ALL_SUPPORTED
    recipes = manager.RecipeManager()
    if header.precision == "fp16":
        recipes.add_weight_only_config(regex=".*", operation_name=ops, num_bits=16,
                                       algorithm_key=algorithms.AlgorithmName.FLOAT_CASTING)
    elif header.precision == "w8":
        recipes.add_weight_only_config(regex=".*", operation_name=ops, num_bits=8)
    else:
        names = require("ai_edge_quantizer.qtyping", "litert").TFLOperationName
        for op in INT8_OPS:  # the rest (normalisation, attention softmax, residual adds) stays float
            recipes.add_static_config(regex=".*", operation_name=getattr(names, op), activation_num_bits=8,
                                      weight_num_bits=8)
            recipes.add_quantization_config(regex=KEEP_FLOAT, operation_name=getattr(names, op),
                                            algorithm_key=algorithms.AlgorithmName.NO_QUANTIZE)
        for io in (names.INPUT, names.OUTPUT):  # float inputs and output, as the spec and every runner has them
            recipes.add_quantization_config(regex=".*", operation_name=io,
                                            algorithm_key=algorithms.AlgorithmName.NO_QUANTIZE)
    qt = aeq.Quantizer(str(float_file))
    qt.load_quantization_recipe(recipes.get_quantization_recipe())
    result = None
    if header.precision in CALIBRATED:
        batch = header.spec["x"][0][0]
        samples = [{f"args_{i}": v for i, v in enumerate(prepare_inputs(
            header.spec, header.num_classes, x, t, label if header.num_classes else None,
            w if "w" in header.spec else None).values())} for x, t, label, w in calibration.batches(batch)]
        result = qt.calibrate({SIGNATURE: samples}, num_threads=1)
    qt.quantize(result, enable_progress_bar=False, enable_progress_report=False).export_model(
        str(out_file), overwrite=True)


def op_coverage(model_file: Path) -> dict:
    """Ops inside XNNPACK delegate partitions vs. on the interpreter's own kernels, by name, and the partitions.

    The interpreter lists every original node plus one DELEGATE node per partition; the nodes that still run
    natively are those the outputs depend on through non-delegate producers (walked back from the outputs)."""
    interp = _interpreter(model_file, threads=1)
    nodes = interp._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    originals = [n for n in nodes if n["op_name"] != "DELEGATE"]
    from_delegate = {int(t): d for d in delegates for t in d["outputs"]}
    from_node = {int(t): n for n in originals for t in n["outputs"]}
    native, seen = {}, set()
    stack = [int(o["index"]) for o in interp.get_output_details()]
    while stack:
        t = stack.pop()
        if t in seen or t < 0:
            continue
        seen.add(t)
        producer = from_delegate.get(t) or from_node.get(t)
        if producer is not None:
            if producer["op_name"] != "DELEGATE":
                native[producer["index"]] = producer["op_name"]
            stack += [int(v) for v in producer["inputs"]]
    fallback = Counter(native.values())
    delegated = Counter(n["op_name"] for n in originals) - fallback
    return {"delegate": "xnnpack", "islands": len(delegates), "delegated": sum(delegated.values()),
            "fallback": sum(fallback.values()), "delegated_ops": dict(sorted(delegated.items())),
            "fallback_ops": dict(sorted(fallback.items()))}


def _interpreter(model_file: Path, *, threads: int | None):
    """A LiteRT interpreter over `model_file` with its default XNNPACK delegate, tensors allocated."""
    lite = require("ai_edge_litert.interpreter", "litert")
    artifact.check_magic(model_file, FLATBUFFER_ID, offset=4, what="a LiteRT (.tflite) model")
    with artifact.native_errors(model_file, "LiteRT"):
        interp = lite.Interpreter(model_path=str(model_file), num_threads=threads)
        interp.allocate_tensors()
    return interp


class LiteRTRunner(SpecRunner):
    """Runner over a .tflite file: inputs checked against the static spec, then the signature runner (XNNPACK)."""

    def __init__(self, model_file: Path, header, *, threads: int | None = None):
        self.spec, self.num_classes, self.model_file = header.spec, header.num_classes, Path(model_file)
        self.threads = threads
        interp = _interpreter(self.model_file, threads=threads)
        with artifact.native_errors(self.model_file, "LiteRT"):
            self._run_signature = interp.get_signature_runner(SIGNATURE)
        self._interp = interp  # keeps the interpreter alive as long as its signature runner

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with artifact.native_errors(self.model_file, "LiteRT"):
            out = self._run_signature(**{f"args_{i}": v for i, v in enumerate(inputs.values())})
        return np.array(out["output_0"], dtype=np.float32, copy=True)


def devices() -> list[str]:
    """LiteRT runs here on the CPU (XNNPACK); the GPU and NPU delegates are for phones."""
    require("ai_edge_litert.interpreter", "litert")
    return ["CPU"]


def load(artifact_or_dir, *, device: str | None = None, threads: int | None = None) -> LiteRTRunner:
    """Verify a litert artifact (hashes, spec) and return its Runner with `threads` interpreter threads."""
    art = artifact.open_artifact(artifact_or_dir, backend=BACKEND.name)
    if art.precision not in PRECISIONS:
        raise InputError(f"{art.path} has litert precision {art.precision!r}; expected one of {PRECISIONS}")
    return LiteRTRunner(art.model_path, art, threads=threads)


APP_HINT = ("Android: load `{file}` with LiteRT's `Interpreter` (or `CompiledModel`) and the XNNPACK, GPU or NPU "
            "delegate; inputs args_0.. in spec order, see below.")
BACKEND = ModuleBackend(name="litert", precisions=PRECISIONS, calibrated=CALIBRATED, label_dtype="int32",
                        requires=("litert_torch", "ai_edge_litert", "ai_edge_quantizer"), extra="litert",
                        pipeline_precisions=("fp32", "w8"), compressed=("w8", "int8"), app_hint=APP_HINT,
                        devices=devices, convert_fn=convert, load_fn=load)
