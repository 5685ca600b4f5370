"""EDM preconditioning (Karras et al. 2022, Table 1) and the Runner → Denoiser bridge.

A Runner is any backend's network call `(x, t, label) -> F`; a Denoiser is `(x, sigma) -> x0 estimate`. The maths
here runs on the host in fp32 numpy (deploy) or torch (training); exported graphs hold only the network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from edgediff.errors import InputError
from edgediff.format.precond import Preconditioning


class Runner(Protocol):
    """`w` (guidance scale per image) is only passed to guidance-embedding models (consistency students)."""

    def __call__(self, x: np.ndarray, t: np.ndarray, label: np.ndarray | None = None,
                 w: np.ndarray | None = None) -> np.ndarray: ...


Denoiser = Callable[[np.ndarray, float], np.ndarray]






def make_denoiser(runner: Runner, precond: Preconditioning, *, label: np.ndarray | None = None,
                  w: np.ndarray | None = None) -> Denoiser:
    """Wrap a Runner into a Denoiser for a fixed batch of class labels (None = unconditional) and, for
    guidance-embedding models, guidance scales `w` (one network call per step however strong the guidance)."""

    def denoise(x: np.ndarray, sigma: float) -> np.ndarray:
        if not sigma > 0:
            raise InputError(f"sigma must be > 0, got {sigma}")
        t = np.full((x.shape[0],), precond.c_noise(sigma), dtype=np.float32)
        x_in = (x * precond.c_in(sigma)).astype(np.float32, copy=False)
        f = runner(x_in, t, label) if w is None else runner(x_in, t, label, w)
        return precond.c_skip(sigma) * x + precond.c_out(sigma) * f

    return denoise
