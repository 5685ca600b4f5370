"""The steps every backend's `convert` shares: the Header (spec, preconditioning, provenance), torch.export
capture, and the staged build — reuse a matching artifact, else stage → lower → reload → parity gate → commit."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from edgediff.converters import memory, parity
from edgediff.errors import InputError
from edgediff.format import staging
from edgediff.format.artifact import Artifact, Header, InputSpec
from edgediff.format.inputs import COMPONENT_DTYPES, component_of
from edgediff.format.precond import Preconditioning
from edgediff.sampling.denoiser import Runner


def example_inputs(spec: InputSpec) -> tuple:
    """Zero-ish torch tensors matching `spec`, in its order, for capture (torch.export)."""
    import torch

    return tuple(torch.zeros(shape, dtype=getattr(torch, dtype)) for shape, dtype in spec.values())


def weights_sha256(net) -> str:
    """sha256 over a module's class name and state_dict (names, dtypes, shapes, bytes)."""
    import torch

    h = hashlib.sha256(type(net).__qualname__.encode())
    for name, value in sorted(net.state_dict().items()):
        v = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{v.dtype}:{tuple(value.shape)}".encode())
        h.update(v.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def describe_source(net, source: dict | None, *, tools: tuple[str, ...]) -> dict:
    """Provenance: the caller's model description, a hash of the weights, tool versions, git sha."""
    out = dict(source or {})
    out["weights_sha256"] = weights_sha256(net)
    out["tools"] = {name: _version(name) for name in ("edgediff", "torch", "numpy", *tools)}
    sha = git_sha()
    if sha:
        out["git_sha"] = sha
    return out


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_sha() -> str | None:
    """The commit of the source checkout edgediff runs from, if it is one."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def header_for(net, spec: InputSpec, *, backend: str, precision: str, precond, sampler_defaults: dict | None,
               source: dict | None, tools: tuple[str, ...], options: dict | None = None) -> Header:
    """The Header of a conversion: normalised spec/precond, class count and provenance of `net`."""
    _check_spec(spec)
    precond = precond.to_dict() if hasattr(precond, "to_dict") else dict(precond)
    config = getattr(net, "config", None)
    num_classes = int(getattr(config, "num_classes", (source or {}).get("num_classes", 0))) if "label" in spec else 0
    if "label" in spec and num_classes <= 0:
        raise InputError("spec has a label input but the network's class count is unknown; "
                         "pass source={'num_classes': N} (or a net with .config.num_classes)")
    src = describe_source(net, source, tools=tools)
    if config is not None and hasattr(config, "to_dict"):
        src.setdefault("config", config.to_dict())
    return Header(backend=backend, precision=precision, spec={k: (tuple(s), d) for k, (s, d) in spec.items()},
                  precond=precond, sampler_defaults=dict(sampler_defaults or {}), source=src,
                  num_classes=num_classes, options=dict(options or {}))


def _check_spec(spec: InputSpec) -> None:
    names = list(spec)
    if component_of(spec) is not None:  # a text-to-image component: its own inputs, each of a fixed dtype
        for name, (shape, dtype) in spec.items():
            if dtype != COMPONENT_DTYPES[name] or not shape or any(int(d) < 1 for d in shape):
                raise InputError(f"spec {name} must be {COMPONENT_DTYPES[name]} of positive static dims; got "
                                 f"{shape} {dtype}")
        return
    if names not in (["x", "t"], ["x", "t", "label"], ["x", "t", "label", "w"]):
        raise InputError(f"spec must name inputs x, t[, label[, w]] in that order; got {names}")
    shape = tuple(spec["x"][0])
    if len(shape) != 4 or shape[2] != shape[3] or spec["t"][0] != (shape[0],) or spec["x"][1] != "float32":
        raise InputError(f"spec x must be float32 [B,C,R,R] and t [B]; got {spec}")
    if "label" in spec and spec["label"][1] not in ("int32", "int64"):
        raise InputError(f"spec label dtype must be int32 or int64; got {spec['label'][1]}")


def capture(net, spec: InputSpec):
    """torch.export the network (eval mode) with static shapes from `spec`."""
    import torch

    with torch.no_grad():
        return torch.export.export(net.eval(), example_inputs(spec))


def build(net, out_dir, header: Header, *, lower: Callable[[Path], tuple[str, dict]],
          load_staged: Callable[[Path], Runner] | None) -> Artifact:
    """Every convert's shared tail: reuse a matching artifact, else stage → lower → reload → gate → commit.

    `lower(tmp)` writes the model into the staging dir and returns (model file name, op coverage);
    `load_staged(model_path)` returns a Runner over it, or is None where this machine cannot run it. A
    text-to-image component (its spec names `ids`, `context` or `z`) is gated on the inputs it carries as
    `net.parity_inputs` (recorded from its own pipeline), not on the denoiser's σ sweep.
    """
    found = staging.reusable(out_dir, header)
    if found is not None:
        return found
    component = load_staged is not None and component_of(header.spec) is not None
    if component:  # eager's outputs first: its activations never sit beside the runtime's copy of the weights
        from edgediff.models.eager import ModuleRunner

        eager = ModuleRunner(net)
        references = [eager(*inputs) for inputs in net.parity_inputs]
    with staging.staging(out_dir) as tmp:
        model_file, coverage = lower(tmp)
        memory.release()  # what tracing freed, before the runtime loads its own copy
        result = None
        if component:
            result = parity.check_on(load_staged(tmp / model_file), references, net.parity_inputs,
                                     min_db=parity.gate_for(header.precision))
        elif load_staged is not None:
            result = parity.check(load_staged(tmp / model_file), reference_runner(net, header), header.spec,
                           Preconditioning.from_dict(header.precond), num_classes=header.num_classes,
                           min_db=parity.gate_for(header.precision))
        return staging.commit(tmp, out_dir, header, model_file=model_file, op_coverage=coverage, parity=result)


def reference_runner(net, header: Header) -> Runner:
    """The eager fp32 Runner over `net` for the header's spec."""
    from edgediff.models.eager import EagerRunner

    shape = header.spec["x"][0]
    return EagerRunner(net, channels=shape[1], resolution=shape[2], num_classes=header.num_classes)
