"""OpenVINO backend: openvino.convert_model → static reshape → IR (.xml/.bin), run on any Core device.

fp32 keeps f32 weights; fp16 stores fp16-compressed weights (computed in f32); bf16 keeps f32 weights and asks the
runtime for bf16 inference (the CPU plugin's own default here, which is why f32 is requested explicitly otherwise).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np

from edgediff.converters import build
from edgediff.converters import calibration as calibrate
from edgediff.converters.base import ModuleBackend
from edgediff.errors import InputError, require
from edgediff.format import artifact
from edgediff.format.inputs import SpecRunner, calibration_inputs

MODEL_FILE = "model.xml"
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "w8")
CALIBRATED = ("int8",)
HINTS = {"fp32": "f32", "fp16": "f32", "bf16": "bf16", "int8": "f32", "w8": "f32"}
KEEP_FLOAT = (".*conv_in.*", ".*conv_out.*", ".*time_mlp.*", ".*label_emb.*", ".*time_embedding.*",
              ".*class_embedding.*")  # int8: sensitive layers stay f32


def convert(net, spec: artifact.InputSpec, out_dir, *, precision: str = "fp32", calibration=None, precond,
            sampler_defaults: dict | None = None, source: dict | None = None,
            threads: int | None = None) -> artifact.Artifact:
    """Convert `net` to an OpenVINO IR artifact in `out_dir`, parity-gated on this machine's CPU."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown openvino precision {precision!r}; expected one of {PRECISIONS}")
    header = build.header_for(net, spec, backend=BACKEND.name, precision=precision, precond=precond,
                                 sampler_defaults=sampler_defaults, source=source, tools=("openvino", "nncf"),
                                 options=calibrate.options_for(precision, calibration, needs=CALIBRATED))

    def staged(file):
        return OpenVINORunner(_compile(file, device="CPU", hint=HINTS[precision], threads=threads), header)
    return build.build(net, out_dir, header, lower=lambda tmp: _lower(net, header, tmp, calibration),
                        load_staged=staged)


def _lower(net, header: artifact.Header, tmp: Path, calibration=None) -> tuple[str, dict]:
    """Trace with openvino.convert_model, fix every input's shape, compress, save the IR; return (file, coverage)."""
    import torch

    ov = require("openvino", "openvino")
    with torch.no_grad(), warnings.catch_warnings():  # diffusers' shape checks: TracerWarnings, static shapes
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        model = ov.convert_model(net.eval(), example_input=build.example_inputs(header.spec))
    model.reshape({model.inputs[i]: list(shape) for i, (shape, _) in enumerate(header.spec.values())})
    coverage = {"inference_precision": HINTS[header.precision],
                "note": "OpenVINO runs the whole graph on the chosen device (no partitioning)"}
    if header.precision == "int8":
        model = _quantize_int8(model, header, calibration)
        calibrate.save(tmp / calibrate.CALIBRATION_FILE, calibration)
        coverage["kept_float"] = [p.strip(".*") for p in KEEP_FLOAT]
    elif header.precision == "w8":
        model = require("nncf", "openvino").compress_weights(model)
        coverage["kept_float"] = ["activations"]
    ov.save_model(model, str(tmp / MODEL_FILE), compress_to_fp16=header.precision == "fp16")
    coverage["ops"] = sorted({op.get_type_name() for op in model.get_ops()})
    return MODEL_FILE, coverage


def _quantize_int8(model, header: artifact.Header, calibration):
    """NNCF post-training static int8 (weights + activations) fed the calibration inputs in spec order."""
    nncf = require("nncf", "openvino")
    batch = header.spec["x"][0][0]
    items = [list(calibration_inputs(header.spec, header.num_classes, x, t, label, w).values())
             for x, t, label, w in calibration.batches(batch)]
    return nncf.quantize(model, nncf.Dataset(items), subset_size=len(items), model_type=nncf.ModelType.TRANSFORMER,
                         ignored_scope=nncf.IgnoredScope(patterns=list(KEEP_FLOAT), validate=False))


def core():
    """The one process-wide `openvino.Core` (a clear error naming the pip extra when openvino is missing).

    Each Core installs a signal alternate stack when it first compiles and puts back the one it found when it is
    destroyed; with two Cores whose lifetimes overlap, dropping them out of order leaves a freed stack installed
    and the next signal (Ctrl-C) crashes the process with SIGSEGV. One Core that lives as long as the process
    keeps every later (nested) Core's restore pointing at live memory.
    """
    return _shared_core(require("openvino", "openvino"))


@functools.cache
def _shared_core(ov):
    return ov.Core()


def devices() -> list[str]:
    """The devices this OpenVINO runtime can use here (CPU, GPU, NPU ...) plus the AUTO selector."""
    return [*core().available_devices, "AUTO"]


def _compile(model_file: Path, *, device: str, hint: str, threads: int | None, cache_dir=None):
    """Compile the IR for `device` with an explicit inference precision where the device takes one."""
    ov_core = core()
    known = [*ov_core.available_devices, "AUTO"]
    if device not in known:
        raise InputError(f"OpenVINO device {device!r} is not available here; expected one of {', '.join(known)}")
    config = {"INFERENCE_PRECISION_HINT": hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if device == "AUTO":  # AUTO forwards per-device settings to the device it picks
        config = {"DEVICE_PROPERTIES": {d: _supported(ov_core, d, config) for d in ov_core.available_devices}}
    else:
        config = _supported(ov_core, device, config)
    if cache_dir:
        config["CACHE_DIR"] = str(cache_dir)
    artifact.check_magic(model_file, b"<?xml", what="an OpenVINO IR")
    with artifact.native_errors(model_file, "OpenVINO"):
        return ov_core.compile_model(str(model_file), device, config)


def _supported(core, device: str, config: dict) -> dict:
    names = set(core.get_property(device, "SUPPORTED_PROPERTIES"))
    return {k: v for k, v in config.items() if k in names}


class OpenVINORunner(SpecRunner):
    """Runner over a compiled OpenVINO model: checks inputs against the static spec, then infers."""

    def __init__(self, compiled, header):
        self.spec, self.num_classes = header.spec, header.num_classes
        self._request = compiled.create_infer_request()

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        out = self._request.infer(list(inputs.values()))
        return np.array(out[0], dtype=np.float32, copy=True)

    @property
    def threads(self) -> int | None:
        """The inference threads the compiled model uses (None where the device cannot say)."""
        try:
            return int(self._request.get_compiled_model().get_property("INFERENCE_NUM_THREADS"))
        except (RuntimeError, TypeError, ValueError):
            return None


def load(artifact_or_dir, *, device: str | None = None, threads: int | None = None, cache_dir=None,
         inference_precision: str | None = None) -> OpenVINORunner:
    """Verify an openvino artifact and compile it for `device` (CPU by default; f32 unless the artifact is bf16)."""
    art = artifact.open_artifact(artifact_or_dir, backend=BACKEND.name)
    hint = inference_precision or HINTS.get(art.precision, "f32")
    compiled = _compile(art.model_path, device=device or "CPU", hint=hint, threads=threads, cache_dir=cache_dir)
    return OpenVINORunner(compiled, art)


APP_HINT = ("Laptop: `core.compile_model('{file}', device)` with device 'CPU', 'GPU' or 'NPU'; shapes are "
            "static, so NPU works.")
BACKEND = ModuleBackend(name="openvino", precisions=PRECISIONS, calibrated=CALIBRATED, label_dtype="int32",
                        convert_options=("threads",), load_options=("cache_dir", "inference_precision"),
                        takes_device=True, requires=("openvino", "nncf"), extra="openvino",
                        pipeline_precisions=("fp32", "int8"), compressed=("int8", "w8"),
                        app_hint=APP_HINT,
                        devices=devices, convert_fn=convert, load_fn=load)
