"""What is shipped and what is installed: model sizes, FLOPs per step, and which runtimes can be used."""

from __future__ import annotations

import importlib.util
import platform

from . import checkpoint
from .unet import count_params, flops_per_step

RUNTIMES = {"executorch": "executorch", "openvino": "openvino", "coreml": "coremltools", "prune": "torch_pruning"}


def describe(model: str) -> dict:
    """Params, GFLOPs per network call (batch 1) and weight file size of one model directory."""
    md = checkpoint.load(model, weights=False)
    weights = md.path / checkpoint.WEIGHTS_FILE
    c = md.unet
    return {
        "name": md.meta.get("name", md.path.name), "path": str(md.path),
        "params": count_params(md.net), "gflops_per_step": flops_per_step(md.net, c) / 1e9,
        "resolution": c.resolution, "channels": c.in_channels, "classes": c.num_classes,
        "weights_mb": weights.stat().st_size / 1e6 if weights.is_file() else None,
        "sampler_defaults": md.sampler_defaults,
    }


def runtimes() -> dict[str, bool]:
    """Which optional runtimes are importable (checked without importing them)."""
    return {extra: importlib.util.find_spec(mod) is not None for extra, mod in RUNTIMES.items()}


def format_table(rows: list[dict]) -> str:
    lines = [f"{'model':<14}{'params':>10}{'GFLOPs/step':>13}{'res':>6}{'classes':>9}{'weights':>11}"]
    for r in rows:
        w = f"{r['weights_mb']:.1f} MB" if r["weights_mb"] is not None else "untrained"
        lines.append(f"{r['name']:<14}{r['params'] / 1e6:>9.2f}M{r['gflops_per_step']:>13.3f}{r['resolution']:>6}"
                     f"{r['classes']:>9}{w:>11}")
    extras = ", ".join(f"{k}: " + ("yes" if v else f'no (pip install "edgediff[{k}]")') for k, v in runtimes().items())
    lines.append(f"runtimes: {extras}")
    lines.append(f"host: {platform.machine()} {platform.system()}, python {platform.python_version()}")
    return "\n".join(lines)
