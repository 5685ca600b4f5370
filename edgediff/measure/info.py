"""What is shipped and what is installed: model sizes, FLOPs per step, and which runtimes can be used."""

from __future__ import annotations

import importlib.util
import platform

from edgediff.converters import base
from edgediff.format import model_dir, pipeline_manifest
from edgediff.measure import info_text_to_image
from edgediff.models import checkpoint
from edgediff.models.unet import count_params, flops_per_step

TOOLS = {"prune": "torch_pruning"}  # optional non-backend extras


def describe(model: str) -> dict:
    """Params, GFLOPs per network call (batch 1) and weight file size of one model directory (per component for a
    text-to-image folder or pipeline artifact)."""
    if model_dir.prompt_model(model) is not None or pipeline_manifest.is_pipeline(model):
        return info_text_to_image.describe(model)
    md = checkpoint.load(model, weights=False)
    weights = md.weights_file
    c = md.unet
    d = md.meta.get("diffusers")
    source = (f"diffusers {d['pipeline'] or 'UNet2DModel folder'}, {d['scheduler']}"
              f"{' (assumed)' if d['scheduler_assumed'] else ''}, {d['prediction_type']}") if d else "edgediff"
    return {"source": source, "class_names": list(md.class_names),
        "name": md.meta.get("name", md.path.name), "path": str(md.path),
        "params": count_params(md.net), "gflops_per_step": flops_per_step(md.net, c) / 1e9,
        "resolution": c.resolution, "channels": c.in_channels, "classes": c.num_classes,
        "weights_mb": weights.stat().st_size / 1e6 if weights.is_file() else None,
        "sampler_defaults": md.sampler_defaults,
    }


def runtimes() -> dict[str, bool]:
    """Which backends (every registered one) and optional tools are installed (checked without importing them)."""
    out = {name: base.installed(base.get(name)) for name in base.names() if name != "eager"}
    return out | {extra: importlib.util.find_spec(mod) is not None for extra, mod in TOOLS.items()}


def backend_rows() -> list[dict]:
    """One row per registered backend: precisions, installed or not, and why its artifacts cannot run here."""
    rows = []
    for name in base.names():
        be = base.get(name)
        rows.append({"backend": name, "precisions": list(be.precisions) or ["(reference)"],
                     "installed": base.installed(be), "extra": be.extra, "runs_here": be.unavailable() or "yes"})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'model':<14}{'params':>10}{'GFLOPs/step':>13}{'res':>6}{'classes':>9}{'weights':>11}"]
    for r in rows:
        if r.get("kind") == "text_to_image":
            lines += info_text_to_image.format_rows(r)
            continue
        w = f"{r['weights_mb']:.1f} MB" if r["weights_mb"] is not None else "untrained"
        lines.append(f"{r['name']:<14}{r['params'] / 1e6:>9.2f}M{r['gflops_per_step']:>13.3f}{r['resolution']:>6}"
                     f"{r['classes']:>9}{w:>11}  {r.get('source', '')}")
        if r.get("class_names"):
            lines.append(f"  classes: {', '.join(r['class_names'])}")
    for b in backend_rows():
        state = "installed" if b["installed"] else f'not installed (pip install "edgediff[{b["extra"]}]")'
        lines.append(f"backend {b['backend']:<11} {', '.join(b['precisions']):<40} {state}; runs here: "
                     f"{b['runs_here']}")
    tools = ", ".join(f"{k}: " + ("yes" if importlib.util.find_spec(m) else f'no (pip install "edgediff[{k}]")')
                      for k, m in TOOLS.items())
    lines.append(f"tools: {tools}")
    lines.append(f"host: {platform.machine()} {platform.system()}, python {platform.python_version()}")
    return "\n".join(lines)
