"""The reference backend: the PyTorch module itself, run eagerly on the host CPU (it converts nothing)."""

from __future__ import annotations

from edgediff.converters.base import ModuleBackend
from edgediff.models import checkpoint
from edgediff.models.eager import EagerRunner


def load(model="default", *, device: str | None = None, threads: int | None = None) -> EagerRunner:
    """Runner for a model directory ('default', a shipped name, a path) or an already loaded ModelDir."""
    md = model if isinstance(model, checkpoint.ModelDir) else checkpoint.load(model)
    c = md.unet
    return EagerRunner(md.net, channels=c.in_channels, resolution=c.resolution, num_classes=c.num_classes,
                       threads=threads)


def devices() -> list[str]:
    """Eager PyTorch runs on the host CPU."""
    return ["CPU"]


BACKEND = ModuleBackend(name="eager", precisions=(), label_dtype="int64", devices=devices, load_fn=load)
