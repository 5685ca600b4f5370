"""The reference backend: the PyTorch module itself, run eagerly on the host CPU."""

from __future__ import annotations

import numpy as np
import torch

from edgediff import checkpoint
from edgediff.errors import InputError
from edgediff.inputs import check_guidance, check_runner_inputs


class EagerRunner:
    """Runner over an nn.Module with a (x, t[, label]) forward: numpy in, numpy out, fp32."""

    def __init__(self, net: torch.nn.Module, *, channels: int, resolution: int, num_classes: int,
                 threads: int | None = None):
        self.net = net.eval()
        self.channels, self.resolution, self.num_classes = channels, resolution, num_classes
        self.threads = threads

    @property
    def takes_guidance(self) -> bool:
        """True for guidance-embedding students: pass w instead of a second, unconditional call."""
        return bool(getattr(getattr(self.net, "config", None), "guidance_embed", False))

    def __call__(self, x: np.ndarray, t: np.ndarray, label: np.ndarray | None = None,
                 w: np.ndarray | None = None) -> np.ndarray:
        x, t, label = check_runner_inputs(x, t, label, channels=self.channels, resolution=self.resolution,
                                          num_classes=self.num_classes)
        guided = self.takes_guidance
        if w is not None and not guided:
            raise InputError("this model takes no guidance input w; guide it with two calls (classifier-free guidance)")
        extra = (torch.from_numpy(check_guidance(w, len(x))),) if guided else ()
        if self.threads:
            torch.set_num_threads(self.threads)
        lab = torch.from_numpy(label.astype(np.int64)) if label is not None else None
        with torch.inference_mode():
            return self.net(torch.from_numpy(x), torch.from_numpy(t), lab, *extra).numpy()


def load(model="default", *, threads: int | None = None, **unknown) -> EagerRunner:
    """Runner for a model directory ('default', a shipped name, a path) or an already loaded ModelDir."""
    if unknown:
        raise InputError(f"the eager runner takes only threads=; got {sorted(unknown)} (devices are for artifacts)")
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise InputError(f"threads must be an integer >= 1, got {threads!r}")
    md = model if isinstance(model, checkpoint.ModelDir) else checkpoint.load(model)
    c = md.unet
    return EagerRunner(md.net, channels=c.in_channels, resolution=c.resolution, num_classes=c.num_classes,
                       threads=threads)


def devices() -> list[str]:
    """Eager PyTorch runs on the host CPU."""
    return ["CPU"]
