"""Core ML backend: coremltools.convert of the torch.export program → ML Program (.mlpackage) with metadata.

Converting and compressing work on any OS; prediction (and so the parity gate) needs macOS, and is recorded as
"not measured (needs macOS)" elsewhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgediff.converters import build
from edgediff.converters.base import ModuleBackend, not_measured
from edgediff.errors import EdgediffError, InputError, ModelFileError, require
from edgediff.format import artifact, inputs
from edgediff.format.inputs import SpecRunner

MODEL_FILE = "model.mlpackage"
PRECISIONS = ("fp32", "fp16", "w8", "palette6", "palette4", "w4")
COMPRESSED = {"w8": "int8 per-channel linear weights", "palette6": "6-bit k-means palette per tensor",
              "palette4": "4-bit k-means palette per tensor", "w4": "int4 block-wise (32) linear weights, iOS18+"}
OUTPUT = "output"
COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


def convert(net, spec: artifact.InputSpec, out_dir, *, precision: str = "fp32", calibration=None, precond,
            sampler_defaults: dict | None = None, source: dict | None = None,
            minimum_deployment_target: str = "iOS17", attention: str = "original", chunks: int | None = None,
            author: str = "edgediff", license: str = "", version: str = "") -> artifact.Artifact:
    """Convert `net` to an ML Program artifact in `out_dir` (parity-gated on macOS only).

    `attention` picks Apple's attention implementation for diffusers' Attention blocks (original, split_einsum,
    split_einsum_v2: the last two for the Neural Engine); `chunks` = 2 splits the program into two mlpackages of
    about equal weight (ml-stable-diffusion's --chunk-unet), which None does by itself for an iOS target whose
    weights exceed CHUNK_BYTES.
    """
    from edgediff.models import ane_attention

    if precision not in PRECISIONS or calibration is not None:
        raise InputError(f"coreml converts precision {PRECISIONS} without calibration here; got {precision!r}")
    ane_attention.processor(attention)  # a one-line error for an unknown name, before anything is built
    if precision == "w4" and minimum_deployment_target < "iOS18":
        minimum_deployment_target = "iOS18"  # block-wise int4 weights need the iOS18 opset
    pieces = _chunks(chunks, net, precision, minimum_deployment_target)
    meta = {"author": author, "license": license, "version": version}
    header = build.header_for(net, spec, backend=BACKEND.name, precision=precision, precond=precond,
                              sampler_defaults=sampler_defaults, source=source, tools=("coremltools",),
                              options={"minimum_deployment_target": minimum_deployment_target,
                                       "attention": attention, "chunks": pieces, **meta})
    staged = (lambda f: CoreMLRunner(f, header, compute_units="CPU_ONLY")) if on_macos() else None
    with ane_attention.attention_implementation(net, attention):
        return build.build(net, out_dir, header, lower=lambda tmp: _lower(net, header, tmp), load_staged=staged)


CHUNK_BYTES = 1 << 30  # ml-stable-diffusion chunks an iOS UNet over 1 GB of weights in two
CHUNK_FILES = ("model_chunk1.mlpackage", "model_chunk2.mlpackage")  # bisect_model's names for model.mlpackage
WEIGHT_BYTES = {"fp32": 4, "fp16": 2, "w8": 1, "palette6": 0.75, "palette4": 0.5, "w4": 0.5}


def _chunks(chunks: int | None, net, precision: str, target: str) -> list[str]:
    """The mlpackage files the program is split into ([] for one model.mlpackage)."""
    if chunks is None:
        weight = sum(p.numel() for p in net.parameters()) * WEIGHT_BYTES[precision]
        chunks = 2 if target.startswith("iOS") and weight > CHUNK_BYTES else 1
    if chunks not in (1, 2) or isinstance(chunks, bool):
        raise InputError(f"coreml splits a program into 1 or 2 chunks (coremltools' bisect_model); got {chunks!r}")
    return [] if chunks == 1 else list(CHUNK_FILES)



def on_macos() -> bool:
    return sys.platform == "darwin"


def devices() -> list[str]:
    """Compute-unit choices Core ML can predict on here: all of them on macOS, none elsewhere."""
    return list(COMPUTE_UNITS) if on_macos() else []


def _lower(net, header: artifact.Header, tmp: Path) -> tuple[str, dict]:
    """torch.export → coremltools.convert (mlprogram, static shapes) → metadata → save."""
    ct = require("coremltools", "coreml")
    target_name = header.options["minimum_deployment_target"]
    target = getattr(ct.target, target_name, None)
    if target is None:
        raise InputError(f"unknown minimum_deployment_target {target_name!r}; expected e.g. iOS17, iOS18, macOS14")
    ep = _without_aliases(build.capture(net, header.spec).run_decompositions(_decompositions()))
    precision = ct.precision.FLOAT32 if header.precision == "fp32" else ct.precision.FLOAT16
    model = ct.convert(ep, convert_to="mlprogram", minimum_deployment_target=target, compute_precision=precision,
                       skip_model_load=True)
    if header.precision in COMPRESSED:
        model = _compress(model, header.precision)
    ops = sorted({op.op_type for f in model._mil_program.functions.values() for op in f.operations})
    out_name = model.get_spec().description.output[0].name
    ct.utils.rename_feature(model._spec, out_name, OUTPUT)
    model = ct.models.MLModel(model._spec, weights_dir=model.weights_dir, skip_model_load=True)
    _describe(model, header)
    model.save(str(tmp / MODEL_FILE))
    coverage = {"ops": ops, "compute_precision": header.precision, "attention": header.options["attention"],
                "parity": not_measured(unavailable()) if unavailable() else "measured on CPU_ONLY"}
    if not header.options["chunks"]:
        return MODEL_FILE, coverage
    del model
    _bisect(tmp)
    return CHUNK_FILES[0], {**coverage, "chunks": {f: _weight_bytes(tmp / f) for f in CHUNK_FILES}}


def _bisect(tmp: Path) -> None:
    """model.mlpackage → two chunks of about equal weight (coremltools' bisect_model, ml-stable-diffusion's
    chunk_mlprogram), each carrying the artifact's metadata; the whole model is removed."""
    import shutil

    ct = require("coremltools", "coreml")
    whole = tmp / MODEL_FILE
    halves = tmp / "bisect"
    ct.models.utils.bisect_model(str(whole), str(halves), check_output_correctness=False)  # predicts: macOS only
    source = ct.models.MLModel(str(whole), skip_model_load=True)
    for i, name in enumerate(CHUNK_FILES):
        chunk = ct.models.MLModel(str(halves / name), skip_model_load=True)
        chunk.author, chunk.license, chunk.version = source.author, source.license, source.version
        chunk.short_description = f"{source.short_description} (chunk {i + 1} of {len(CHUNK_FILES)})"
        chunk.user_defined_metadata.update(source.user_defined_metadata)
        chunk.save(str(tmp / name))
    shutil.rmtree(halves)
    shutil.rmtree(whole)


def _weight_bytes(package: Path) -> int:
    return sum(f.stat().st_size for f in package.rglob("*") if f.is_file() and "weights" in f.parts)


def _decompositions() -> dict:
    """Ops coremltools' EXIR frontend lacks, in ops it has: where(cond, x, scalar) (CLIP's causal mask)."""
    import torch

    def where_scalar_other(condition, x, other):
        return torch.where(condition, x, torch.full_like(x, other))

    return {torch.ops.aten.where.ScalarOther: where_scalar_other}


def _without_aliases(ep):
    """coremltools' EXIR frontend has no `aten.alias` (a no-op slice such as CLIP's `position_ids[:, :77]` leaves
    one): each is replaced by its input, which is what it returns."""
    import torch

    graph = ep.graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten.alias.default:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    ep.graph_module.recompile()
    return ep


def _compress(model, precision: str):
    """Weight compression with coremltools.optimize.coreml (works off macOS; tiny tensors stay fp16)."""
    cto = require("coremltools.optimize.coreml", "coreml")
    op = {"w8": lambda: cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel"),
          "w4": lambda: cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int4", granularity="per_block",
                                                    block_size=32),
          "palette6": lambda: cto.OpPalettizerConfig(mode="kmeans", nbits=6, granularity="per_tensor"),
          "palette4": lambda: cto.OpPalettizerConfig(mode="kmeans", nbits=4, granularity="per_tensor")}[precision]()
    config = cto.OptimizationConfig(global_config=op)
    if precision.startswith("palette"):
        return cto.palettize_weights(model, config)
    return cto.linear_quantize_weights(model, config)


def decompressed_state_dict(artifact_or_dir, reference: dict, *, strict: bool = False) -> dict:
    """The network weights as stored in a Core ML artifact, decompressed to float in Python (no macOS needed).

    `reference` is the torch state_dict the artifact was converted from (for names and shapes); loading the
    result into that network measures what compression did to quality, e.g. its FID-proxy. A tensor the program
    does not hold under its own name (a norm's scale folded into another op) is taken from `reference`; `strict`
    makes that an error for every weight of two or more dimensions.
    """
    import torch

    ct = require("coremltools", "coreml")
    cto = require("coremltools.optimize.coreml", "coreml")
    art = artifact.open_artifact(artifact_or_dir, backend=BACKEND.name)
    consts = {}
    for file in [art.path / f for f in art.options.get("chunks") or ()] or [art.model_path]:
        with artifact.native_errors(file, "coremltools"):
            model = cto.decompress_weights(ct.models.MLModel(str(file), skip_model_load=True))
            consts.update(cto.get_weights_metadata(model, weight_threshold=0))
    out = {}
    for key, value in reference.items():
        name = "p_" + key.replace(".", "_")
        names = [f"{name}_to_fp16{suffix}" for suffix in ("_quantized", "_palettized", "")] + [name]
        meta = next((consts[n] for n in names if n in consts), None)
        if meta is None and strict and value.ndim >= 2:
            raise ModelFileError(f"{art.path} holds no weight named {name}; expected every weight of {key}'s kind "
                                 f"under its own name")
        out[key] = value.clone() if meta is None else torch.from_numpy(np.asarray(meta.val, np.float32)
                                                                        .reshape(value.shape))
    return out


INPUT_TEXTS = {"x": "c_in(σ)·x, float32 [B,C,H,W]", "t": "c_noise(σ), float32 [B] (the model's own time input)",
               "label": "class index int32 [B]; num_classes means unconditional",
               "w": "guidance scale float32 [B] (1 = none), one call per step",
               "ids": "CLIP token ids int32 [B, max_length]", "context": "text-encoder hidden states float32 [B, L, D]",
               "z": "latents divided by the VAE scaling factor, float32 [B,C,h,w]"}
COMPONENT_OUTPUTS = {"text_encoder": "last hidden states [B, L, D]", "unet": "ε, v or x0 [B,C,h,w] (the scheduler's "
                     "prediction type)", "vae_decoder": "image [B,3,H,W] in [-1, 1]"}


def _describe(model, header: artifact.Header) -> None:
    """Author, licence, version, input/output descriptions and the artifact fields as user metadata."""
    opts = header.options
    model.author, model.license, model.version = opts["author"], opts["license"], opts["version"]
    component = inputs.component_of(header.spec)
    if component is None:
        model.short_description = "edgediff denoiser network F(x, t, label) (EDM preconditioning runs on the host)"
        output = "F [B,C,H,W] (fp16 or fp32); D = c_skip·x + c_out·F on the host"
    else:
        model.short_description = f"edgediff text-to-image component: {component}"
        output = COMPONENT_OUTPUTS[component]
    for name in header.spec:
        model.input_description[name] = INPUT_TEXTS[name]
    model.output_description[OUTPUT] = output
    fields = {"backend": header.backend, "precision": header.precision, "precond": header.precond,
              "sampler_defaults": header.sampler_defaults, "num_classes": header.num_classes,
              "spec": {k: [list(s), d] for k, (s, d) in header.spec.items()}, "source_key": header.key}
    model.user_defined_metadata.update({f"edgediff.{k}": json.dumps(v, sort_keys=True) for k, v in fields.items()})


class CoreMLRunner(SpecRunner):
    """Runner over an .mlpackage through MLModel.predict (macOS only); a chunked program runs its chunks in turn,
    each taking what it needs from the inputs and the previous chunk's outputs."""

    def __init__(self, model_file: Path, header, *, compute_units: str = "ALL"):
        ct = require("coremltools", "coreml")
        if compute_units not in COMPUTE_UNITS:
            raise InputError(f"unknown compute_units {compute_units!r}; expected one of {COMPUTE_UNITS}")
        self.spec, self.num_classes = header.spec, header.num_classes
        files = [Path(model_file).parent / f for f in header.options.get("chunks") or ()] or [Path(model_file)]
        self._models = []
        for file in files:
            with artifact.native_errors(file, "Core ML"):
                model = ct.models.MLModel(str(file), compute_units=ct.ComputeUnit[compute_units])
            self._models.append((model, [i.name for i in model.get_spec().description.input]))

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        values = dict(inputs)
        for model, names in self._models:
            values.update(model.predict({n: values[n] for n in names}))
        return np.asarray(values[OUTPUT], dtype=np.float32)


def load(artifact_or_dir, *, device: str | None = None, threads: int | None = None) -> CoreMLRunner:
    """Verify a coreml artifact and return its Runner on compute unit `device` (ALL by default); off macOS this
    raises a clear EdgediffError. Core ML schedules its own threads: `threads` is not used."""
    art = artifact.open_artifact(artifact_or_dir, backend=BACKEND.name)
    reason = unavailable()
    if reason:
        raise EdgediffError(f"Core ML prediction {reason}; converting and compressing work here "
                            f"({art.path} is valid, sha256 verified)")
    return CoreMLRunner(art.model_path, art, compute_units=device or "ALL")


def unavailable() -> str | None:
    """Why Core ML artifacts cannot run on this machine (None on macOS)."""
    return None if on_macos() else "needs macOS"


APP_HINT = ("iOS/macOS: add `{file}` to the Xcode project and call `prediction(from:)` with the inputs below.")
BACKEND = ModuleBackend(name="coreml", precisions=PRECISIONS, label_dtype="int32",
                        convert_options=("minimum_deployment_target", "attention", "chunks", "author", "license",
                                         "version"),
                        default_device="ALL", takes_device=True, requires=("coremltools",), extra="coreml",
                        pipeline_precisions=("fp16", "palette6"), compressed=("w8", "palette6", "palette4", "w4"),
                        app_hint=APP_HINT,
                        devices=devices, convert_fn=convert, load_fn=load,
                        unavailable=unavailable)
