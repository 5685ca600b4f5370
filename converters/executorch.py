"""ExecuTorch backend: torch.export → XNNPACK (or Core ML) delegate → .pte, run through executorch.runtime.

Before lowering for XNNPACK the captured graph is rewritten with exact, numerically identical decompositions
(GroupNorm → 4-D mean/sub/mul/rsqrt, nearest 2× upsample → reshape/cat, no-op expand/squeeze → view, N-D linear →
2-D linear) so the default UNet lands in one delegate instead of 42 islands, for any weights and either
`UNetConfig.norm`; only the label embedding stays on a portable kernel.
"""

from __future__ import annotations

import operator
from collections import Counter
from pathlib import Path

import numpy as np

from edgediff import artifact, parity
from edgediff.errors import EdgediffError, InputError, require

BACKEND = "executorch"
MODEL_FILE = "model.pte"
LABEL_DTYPE = "int64"  # the UNet embeds int64 indices: int64 input saves a portable cast kernel
PRECISIONS = ("fp32",)
DELEGATES = ("xnnpack", "coreml")


def convert(net, spec: artifact.InputSpec, out_dir, *, precision: str = "fp32", calibration=None, precond,
            sampler_defaults: dict | None = None, source: dict | None = None,
            delegate: str = "xnnpack") -> artifact.Artifact:
    """Lower `net` to a .pte artifact in `out_dir` (parity-gated against eager where it can run here)."""
    if precision not in PRECISIONS or calibration is not None:
        raise InputError(f"executorch converts precision {PRECISIONS} without calibration here; got {precision!r}")
    if delegate not in DELEGATES:
        raise InputError(f"unknown executorch delegate {delegate!r}; expected one of {DELEGATES}")
    header = artifact.header_for(net, spec, backend=BACKEND, precision=precision, precond=precond,
                                 sampler_defaults=sampler_defaults, source=source, tools=("executorch",),
                                 options={"delegate": delegate})
    staged = (lambda f: ExecuTorchRunner(f, header.spec, header.num_classes)) if delegate == "xnnpack" else None
    return parity.build(net, out_dir, header, lower=lambda tmp: _lower(net, header.spec, tmp, delegate),
                        load_staged=staged)


def _lower(net, spec: artifact.InputSpec, tmp: Path, delegate: str) -> tuple[str, dict]:
    """Capture, lower with the delegate's partitioner, serialize; return (file name, op coverage)."""
    exir = require("executorch.exir", "executorch")
    ep = artifact.capture(net, spec)
    if delegate == "xnnpack":
        ep = ep.run_decompositions(xnnpack_friendly_decompositions())
    edge = exir.to_edge_transform_and_lower(ep, partitioner=[_partitioner(delegate)])
    coverage = op_coverage(edge.exported_program().graph_module)
    coverage["delegate"] = delegate
    if delegate != "xnnpack":
        coverage["parity"] = "not measured (needs macOS)"
    (tmp / MODEL_FILE).write_bytes(edge.to_executorch().buffer)
    return MODEL_FILE, coverage


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


def xnnpack_friendly_decompositions() -> dict:
    """Core ATen decompositions plus exact rewrites of ops XNNPACK would otherwise leave to portable kernels."""
    import torch
    from torch._decomp import core_aten_decompositions

    aten = torch.ops.aten
    table = core_aten_decompositions()
    table[aten.native_group_norm.default] = _group_norm
    table[aten.upsample_nearest2d.vec] = _upsample_nearest
    table[aten.expand.default] = _expand
    table[aten.squeeze.dims] = _squeeze_dims
    table[aten.unsqueeze.default] = _unsqueeze
    table[aten.linear.default] = _linear
    return table


def _linear(x, weight, bias=None):
    """Linear on [..., K] as a 2-D linear between reshapes (a batched-matmul form trips XNNPACK's linear pass)."""
    import torch

    if x.dim() <= 2:
        return NotImplemented
    out = torch.ops.aten.linear.default(x.reshape(-1, x.shape[-1]), weight, bias)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _group_norm(x, weight, bias, n, c, hxw, groups, eps):
    """native_group_norm on [B,C,...] from 4-D mean.dim(2,3) / sub / mul / rsqrt (XNNPACK-delegable)."""
    shape, c = x.shape, x.shape[1]
    y = x.reshape(shape[0], groups, c // groups, -1)
    mean = y.mean(dim=(2, 3), keepdim=True)
    d = y - mean
    var = (d * d).mean(dim=(2, 3), keepdim=True)
    rstd = (var + eps).rsqrt()
    y = (d * rstd).reshape(shape)
    per_channel = [1, c] + [1] * (len(shape) - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y, mean.reshape(shape[0], groups), rstd.reshape(shape[0], groups)


def _upsample_nearest(x, output_size=None, scale_factors=None):
    """Nearest 2× upsampling as reshape + cat (distinct operands: XNNPACK's cat wants ≥ 2 input nodes)."""
    import torch

    if x.dim() != 4:
        return NotImplemented
    b, c, h, w = x.shape
    size = output_size or [int(h * scale_factors[0]), int(w * scale_factors[1])]
    if list(size) != [2 * h, 2 * w]:
        return NotImplemented  # keep the original op
    u = torch.cat([x.reshape(b, c * h, w, 1), x.reshape(b, c * h, w, 1)], dim=3)
    v = torch.cat([u.reshape(b, c * h, 1, 2 * w), u.reshape(b, c * h, 1, 2 * w)], dim=2)
    return v.reshape(b, c, 2 * h, 2 * w)


def _expand(x, size, implicit=False):
    import torch

    if list(x.shape) != list(size):
        return NotImplemented
    return torch.ops.aten.view.default(x, list(size))


def _squeeze_dims(x, dims):
    import torch

    drop = {d % max(x.dim(), 1) for d in dims}
    return torch.ops.aten.view.default(x, [s for i, s in enumerate(x.shape) if not (i in drop and s == 1)])


def _unsqueeze(x, dim):
    import torch

    shape = list(x.shape)
    shape.insert(dim % (x.dim() + 1), 1)
    return torch.ops.aten.view.default(x, shape)


class ExecuTorchRunner:
    """Runner over a .pte file: checks inputs against the static spec, then calls the `forward` method."""

    def __init__(self, model_file: Path, spec: artifact.InputSpec, num_classes: int):
        runtime = require("executorch.runtime", "executorch").Runtime.get()
        self.spec, self.num_classes = spec, num_classes
        self._method = runtime.load_program(Path(model_file)).load_method("forward")

    def __call__(self, x: np.ndarray, t: np.ndarray, label: np.ndarray | None = None) -> np.ndarray:
        import torch

        inputs = artifact.prepare_inputs(self.spec, self.num_classes, x, t, label)
        out = self._method.execute([torch.from_numpy(v) for v in inputs.values()])
        return out[0].numpy().astype(np.float32, copy=True)


def devices() -> list[str]:
    """The delegate backends this ExecuTorch runtime has registered (e.g. XnnpackBackend)."""
    runtime = require("executorch.runtime", "executorch").Runtime.get()
    return list(runtime.backend_registry.registered_backend_names)


def load(artifact_or_dir, **runtime_options) -> ExecuTorchRunner:
    """Verify an executorch artifact (hashes, spec) and return its Runner."""
    if runtime_options:
        raise InputError(f"executorch runner takes no options; got {sorted(runtime_options)}")
    art = artifact.open_artifact(artifact_or_dir, backend=BACKEND)
    delegate = art.options.get("delegate", "xnnpack")
    runtime = require("executorch.runtime", "executorch").Runtime.get()
    backend = {"xnnpack": "XnnpackBackend", "coreml": "CoreMLBackend"}.get(delegate, delegate)
    if not runtime.backend_registry.is_available(backend):
        raise EdgediffError(f"{art.path} was lowered for the {delegate} delegate, which this ExecuTorch runtime "
                            f"lacks (registered: {', '.join(runtime.backend_registry.registered_backend_names)})"
                            + ("; Core ML delegates run on macOS/iOS" if delegate == "coreml" else ""))
    return ExecuTorchRunner(art.model_path, art.spec, art.num_classes)
