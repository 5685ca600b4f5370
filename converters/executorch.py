"""ExecuTorch backend: torch.export → XNNPACK (or Core ML) delegate → .pte, run through executorch.runtime.

Before lowering for XNNPACK the captured graph is rewritten with exact, numerically identical decompositions
(GroupNorm → 4-D mean/sub/mul/rsqrt, nearest 2× upsample → reshape/cat, no-op expand/squeeze → view, N-D linear →
2-D linear) so the default UNet lands in one delegate instead of 42 islands, for any weights and either
`UNetConfig.norm`; only the label embedding stays on a portable kernel.
"""

from __future__ import annotations

import operator
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from edgediff.converters import build
from edgediff.converters import calibration as calibrate
from edgediff.converters.base import ModuleBackend, not_measured
from edgediff.converters.xnnpack_rewrites import xnnpack_friendly_decompositions
from edgediff.errors import EdgediffError, InputError, require
from edgediff.format import artifact
from edgediff.format.inputs import SpecRunner, calibration_inputs

MODEL_FILE = "model.pte"
DATA_NAME = "model"  # external weights: model.ptd beside model.pte
DATA_FILE = DATA_NAME + ".ptd"
EXTERNAL_WEIGHTS_BYTES = 1 << 30  # networks with more parameter bytes keep their weights in model.ptd (a .pte is
# one flatbuffer, limited to 2 GB; an SD 1.5 UNet is 3.4 GB at fp32)
PRECISIONS = ("fp32", "int8")
CALIBRATED = ("int8",)
KEEP_FLOAT = ("conv_in", "conv_out", "time_mlp", "label_emb",  # sensitive: stay fp32 in int8 artifacts
              "time_embedding", "class_embedding")  # (the same parts of a diffusers UNet, under `unet.`)
# Residual adds and skip concatenations stay fp32 too: one int8 scale shared by a skip path and a deep path costs
# parity (default model: 32.2 dB with them in int8, 39 dB without) and keeps GroupNorm/upsample in the delegate.
KEEP_FLOAT_OPS = ("add.Tensor", "cat.default")
KEPT_FLOAT = [*KEEP_FLOAT, *KEEP_FLOAT_OPS]  # what an int8 artifact records it left in float
DELEGATES = ("xnnpack", "coreml")


def convert(net, spec: artifact.InputSpec, out_dir, *, precision: str = "fp32", calibration=None, precond,
            sampler_defaults: dict | None = None, source: dict | None = None,
            delegate: str = "xnnpack", external_weights: bool | None = None) -> artifact.Artifact:
    """Lower `net` to a .pte artifact in `out_dir` (parity-gated against eager where it can run here).

    `external_weights` puts the XNNPACK delegate's weights in model.ptd beside the program (ExecuTorch's named
    data; the app passes both files to `Module`); None: when the parameters exceed EXTERNAL_WEIGHTS_BYTES."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown executorch precision {precision!r}; expected one of {PRECISIONS}")
    if delegate not in DELEGATES:
        raise InputError(f"unknown executorch delegate {delegate!r}; expected one of {DELEGATES}")
    if precision == "int8" and delegate != "xnnpack":
        raise InputError("executorch int8 is built for the xnnpack delegate; use --delegate xnnpack")
    if external_weights is None:
        external_weights = delegate == "xnnpack" and _param_bytes(net) > EXTERNAL_WEIGHTS_BYTES
    if external_weights and delegate != "xnnpack":
        raise InputError("executorch external weights (model.ptd) are built for the xnnpack delegate; use "
                         "--delegate xnnpack")
    options = {"delegate": delegate, **calibrate.options_for(precision, calibration, needs=CALIBRATED)}
    if external_weights:
        options["external_weights"] = DATA_FILE
    if precision in CALIBRATED:  # part of the artifact's key: a changed recipe re-converts instead of reusing
        options["kept_float"] = KEPT_FLOAT
    header = build.header_for(net, spec, backend=BACKEND.name, precision=precision, precond=precond,
                                 sampler_defaults=sampler_defaults, source=source, tools=("executorch",),
                                 options=options)
    staged = (lambda f: ExecuTorchRunner(f, header.spec, header.num_classes)) if delegate == "xnnpack" else None
    return build.build(net, out_dir, header, load_staged=staged,
                        lower=lambda tmp: _lower(net, header.spec, tmp, delegate, calibration,
                                                 external=external_weights))


def _param_bytes(net) -> int:
    return sum(p.numel() * p.element_size() for p in net.parameters())


def _lower(net, spec: artifact.InputSpec, tmp: Path, delegate: str, calibration=None, *,
           external: bool = False) -> tuple[str, dict]:
    """Capture, (quantize,) lower with the delegate's partitioner, serialize; return (file name, op coverage)."""
    exir = require("executorch.exir", "executorch")
    ep = build.capture(net, spec)
    if calibration is not None:  # on the training IR, whose conv2d/linear patterns the quantizer matches
        ep = _quantize_int8(net, ep, spec, calibration, external=external)
        calibrate.save(tmp / calibrate.CALIBRATION_FILE, calibration)
    elif external:
        ep = _export(_tag_weights_external(ep.module()), spec, strict=True)
    if delegate == "xnnpack":
        ep = ep.run_decompositions(xnnpack_friendly_decompositions())
        if calibration is None:  # fold input-independent subgraphs (diffusers' `timesteps * ones(B)`)
            from executorch.exir.passes.constant_prop_pass import constant_prop_pass

            ep = constant_prop_pass(ep)
    with warnings.catch_warnings():  # folded constants of parameters: "requires gradient" notices, per constant
        warnings.filterwarnings("ignore", message="A model attribute `_prop_tensor_constant")
        edge = exir.to_edge_transform_and_lower(ep, partitioner=[_partitioner(delegate)])
    coverage = op_coverage(edge.exported_program().graph_module)
    coverage["delegate"] = delegate
    if calibration is not None:
        coverage["kept_float"] = KEPT_FLOAT
    if delegate != "xnnpack":
        coverage["parity"] = not_measured("needs macOS")
    program = edge.to_executorch()  # constants outside the delegate (an embedding table) stay in the program
    (tmp / MODEL_FILE).write_bytes(program.buffer)
    if external:
        program.write_tensor_data_to_file(str(tmp))
        if not (tmp / DATA_FILE).is_file():
            raise EdgediffError(f"ExecuTorch wrote no {DATA_FILE} for the external weights")
        coverage["external_weights"] = {"file": DATA_FILE, "bytes": (tmp / DATA_FILE).stat().st_size}
    return MODEL_FILE, coverage


def _tag_weights_external(module):
    """Every constant the XNNPACK delegate serializes is tagged for model.ptd (ExecuTorch's recipe: tag the
    unlifted module's get_attr nodes, then export it)."""
    passes = require("executorch.exir.passes.external_constants_pass", "executorch")
    passes.delegate_external_constants_pass_unlifted(module=module, gen_tag_fn=lambda node: DATA_NAME)
    return module


def _export(module, spec: artifact.InputSpec, *, strict: bool = False):
    import torch

    return torch.export.export(module, build.example_inputs(spec), strict=strict)


def _quantize_int8(net, ep, spec: artifact.InputSpec, calibration, *, external: bool = False):
    """PT2E static int8 (XNNPACKQuantizer, per-channel weights) of every block; observers fed the calibration.
    `external` tags the quantized module's weights for model.ptd before its one export (a second, strict export
    of the quantized program leaves XNNPACK's channels-last pass a node without its value on an SD UNet)."""
    import torch

    qmod = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch")
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "executorch")
    quantizer = qmod.XNNPACKQuantizer().set_global(qmod.get_symmetric_quantization_config(is_per_channel=True))
    annotate = quantizer.annotate

    def annotate_all_but_sensitive(model):  # set_module_name(..., None) is unsupported: drop those annotations
        model = annotate(model)
        dropped = set()
        for node in model.graph.nodes:
            stack = [path for path, _ in node.meta.get("nn_module_stack", {}).values()]
            if any(_top(path) in KEEP_FLOAT for path in stack) or _is_float_op(node):
                node.meta.pop("quantization_annotation", None)
                dropped.add(node)
        _drop_shared_with(model.graph, dropped)
        return model

    quantizer.annotate = annotate_all_but_sensitive
    model = pt2e.prepare_pt2e(ep.module(), quantizer)
    classes = net.config.num_classes if "label" in spec else 0
    with torch.no_grad():
        for x, t, label, w in calibration.batches(spec["x"][0][0]):
            inputs = calibration_inputs(spec, classes, x, t, label, w)
            model(*(torch.from_numpy(v) for v in inputs.values()))
    model = pt2e.convert_pt2e(model)
    return _export(_tag_weights_external(model) if external else model, spec)


def _drop_shared_with(graph, dropped: set) -> None:
    """Annotations that share a quantization spec with a node left in float (a cross-attention UNet's `add` after
    a dropped one) are dropped too, until none refers to a float node: prepare_pt2e cannot resolve a share with
    nothing (torchao KeyError in _find_root_edge_or_node)."""
    while True:
        more = set()
        for node in graph.nodes:
            ann = node.meta.get("quantization_annotation")
            if ann is None:
                continue
            specs = [*ann.input_qspec_map.values(), ann.output_qspec]
            refs = [getattr(q, "edge_or_node", None) for q in specs if q is not None]
            nodes = {r if not isinstance(r, tuple) else r[0] for r in refs if r is not None} | {
                r[1] for r in refs if isinstance(r, tuple)}
            if nodes & dropped:
                more.add(node)
        if not more:
            return
        for node in more:
            node.meta.pop("quantization_annotation", None)
        dropped |= more


def _top(path: str) -> str:
    """The network part a module path is in: `conv_in.0` → conv_in; a diffusers `unet.conv_in` → conv_in."""
    parts = path.split(".")
    return parts[1] if parts[0] == "unet" and len(parts) > 1 else parts[0]


def _is_float_op(node) -> bool:
    return node.op == "call_function" and getattr(node.target, "__name__", None) in KEEP_FLOAT_OPS


def _partitioner(delegate: str):
    """XNNPACK, or Core ML at fp32 for iOS17+ (the Core ML delegate's own defaults are fp16 and iOS15)."""
    if delegate == "coreml":
        ct = require("coremltools", "coreml")
        backend = require("executorch.backends.apple.coreml.compiler", "executorch").CoreMLBackend
        specs = backend.generate_compile_specs(minimum_deployment_target=ct.target.iOS17,
                                               compute_precision=ct.precision.FLOAT32)
        mod = require("executorch.backends.apple.coreml.partition", "executorch")
        return mod.CoreMLPartitioner(compile_specs=specs)
    mod = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch")
    return mod.XnnpackPartitioner()


def op_coverage(gm) -> dict:
    """Ops inside delegates vs. on portable (fallback) kernels, by name, and the number of delegate islands."""
    delegated, fallback, islands = Counter(), Counter(), 0
    for node in _calls(gm):
        name = _op_name(node.target)
        if name == "executorch_call_delegate":
            islands += 1
            lowered = getattr(gm, node.args[0].target)
            delegated.update(_op_name(n.target) for n in _calls(lowered.original_module.graph_module))
        else:
            fallback[name] += 1
    return {"islands": islands, "delegated": sum(delegated.values()), "fallback": sum(fallback.values()),
            "delegated_ops": dict(sorted(delegated.items())), "fallback_ops": dict(sorted(fallback.items()))}


def _calls(gm):
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target is not operator.getitem]


def _op_name(target) -> str:
    name = getattr(target, "__name__", str(target))
    return "executorch_call_delegate" if "executorch_call_delegate" in name else name


class ExecuTorchRunner(SpecRunner):
    """Runner over a .pte file: checks inputs against the static spec, then calls the `forward` method."""

    def __init__(self, model_file: Path, spec: artifact.InputSpec, num_classes: int):
        runtime = require("executorch.runtime", "executorch").Runtime.get()
        self.spec, self.num_classes, self.model_file = spec, num_classes, Path(model_file)
        artifact.check_magic(model_file, b"ET12", offset=4, what="an ExecuTorch program")
        data = self.model_file.with_name(DATA_FILE)  # external weights, when the program has them
        with artifact.native_errors(model_file, "ExecuTorch"):
            program = runtime.load_program(self.model_file, data_path=data if data.is_file() else None)
            self._method = program.load_method("forward")

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with artifact.native_errors(self.model_file, "ExecuTorch"):
            out = self._method.execute([torch.from_numpy(v) for v in inputs.values()])
        return out[0].numpy().astype(np.float32, copy=True)

    @property
    def threads(self) -> int | None:
        return threadpool_size()


def devices() -> list[str]:
    """The delegate backends this ExecuTorch runtime has registered (e.g. XnnpackBackend)."""
    runtime = require("executorch.runtime", "executorch").Runtime.get()
    return list(runtime.backend_registry.registered_backend_names)


def load(artifact_or_dir, *, device: str | None = None, threads: int | None = None) -> ExecuTorchRunner:
    """Verify an executorch artifact (hashes, spec) and return its Runner; `threads` resizes ExecuTorch's shared
    threadpool first."""
    art = artifact.open_artifact(artifact_or_dir, backend=BACKEND.name)
    delegate = art.options.get("delegate", "xnnpack")
    runtime = require("executorch.runtime", "executorch").Runtime.get()
    backend = {"xnnpack": "XnnpackBackend", "coreml": "CoreMLBackend"}.get(delegate, delegate)
    if not runtime.backend_registry.is_available(backend):
        raise EdgediffError(f"{art.path} was lowered for the {delegate} delegate, which this ExecuTorch runtime "
                            f"lacks (registered: {', '.join(runtime.backend_registry.registered_backend_names)})"
                            + ("; Core ML delegates run on macOS/iOS" if delegate == "coreml" else ""))
    threadpool_size(threads)
    return ExecuTorchRunner(art.model_path, art.spec, art.num_classes)


def threadpool_size(threads: int | None = None) -> int | None:
    """Resize ExecuTorch's shared threadpool to `threads` (when given); the size it now has, if it can say."""
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return threads
    if threads:
        portable_lib._unsafe_reset_threadpool(int(threads))  # called before any method of the new runner runs
    return int(portable_lib._threadpool_get_thread_count())


# labels are int64: the UNet embeds int64 indices, so an int64 input saves a portable cast kernel
APP_HINT = ("Android/iOS: load `{file}` with ExecuTorch's `Module` (XNNPACK backend linked in; where the artifact "
            "holds a model.ptd, pass it as the data path); inputs in spec order, see below.")
BACKEND = ModuleBackend(name="executorch", precisions=PRECISIONS, calibrated=CALIBRATED, label_dtype="int64",
                        convert_options=("delegate", "external_weights"), requires=("executorch",), extra="executorch",
                        pipeline_precisions=("fp32", "int8"), compressed=("int8",),
                        app_hint=APP_HINT,
                        devices=devices, convert_fn=convert, load_fn=load)
