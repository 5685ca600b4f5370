"""A PyTorch module as a Runner: numpy in, numpy out, fp32 on the host CPU — the reference every backend's parity
gate compares against."""

from __future__ import annotations

import numpy as np
import torch

from edgediff.errors import InputError
from edgediff.format.inputs import check_guidance, check_runner_inputs


class EagerRunner:
    """Runner over an nn.Module with a (x, t[, label]) forward: numpy in, numpy out, fp32."""

    def __init__(self, net: torch.nn.Module, *, channels: int, resolution: int, num_classes: int,
                 threads: int | None = None):
        self.net = net.eval()
        self.channels, self.resolution, self.num_classes = channels, resolution, num_classes
        self._threads = threads

    @property
    def threads(self) -> int:
        """The intra-op threads torch uses for this runner's calls."""
        return self._threads or torch.get_num_threads()

    @property
    def takes_guidance(self) -> bool:
        """True for guidance-embedding students: pass w instead of a second, unconditional call."""
        return bool(getattr(getattr(self.net, "config", None), "guidance_embed", False))

    def __call__(self, x: np.ndarray, t: np.ndarray, label: np.ndarray | None = None,
                 w: np.ndarray | None = None) -> np.ndarray:
        x, t, label = check_runner_inputs(x, t, label, channels=self.channels, resolution=self.resolution,
                                          num_classes=self.num_classes)
        if label is not None and not getattr(self.net, "has_null_label", True) and label.max() >= self.num_classes:
            raise InputError(f"labels must lie in 0..{self.num_classes - 1} (this model has no 'no label' class); "
                             f"got {label.max()}")
        guided = self.takes_guidance
        if w is not None and not guided:
            raise InputError("this model takes no guidance input w; guide it with two calls (classifier-free guidance)")
        extra = (torch.from_numpy(check_guidance(w, len(x))),) if guided else ()
        if self._threads:
            torch.set_num_threads(self._threads)
        lab = torch.from_numpy(label.astype(np.int64)) if label is not None else None
        with torch.inference_mode():
            return self.net(torch.from_numpy(x), torch.from_numpy(t), lab, *extra).numpy()


class ModuleRunner:
    """Any nn.Module as a numpy Runner: arrays in (None passes as None), its one output out as float32 — the eager
    reference of a text-to-image pipeline's components."""

    def __init__(self, net: torch.nn.Module):
        self.net = net.eval()

    def __call__(self, *arrays) -> np.ndarray:
        tensors = (None if a is None else torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
        with torch.inference_mode():
            return self.net(*tensors).float().numpy()
