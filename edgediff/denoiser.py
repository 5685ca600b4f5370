"""EDM preconditioning (Karras et al. 2022, Table 1) and the Runner → Denoiser bridge.

A Runner is any backend's network call `(x, t, label) -> F`; a Denoiser is `(x, sigma) -> x0 estimate`. The maths
here runs on the host in fp32 numpy (deploy) or torch (training); exported graphs hold only the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import numpy as np

from .errors import InputError


class Runner(Protocol):
    """`w` (guidance scale per image) is only passed to guidance-embedding models (consistency students)."""

    def __call__(self, x: np.ndarray, t: np.ndarray, label: np.ndarray | None = None,
                 w: np.ndarray | None = None) -> np.ndarray: ...


Denoiser = Callable[[np.ndarray, float], np.ndarray]


@dataclass(frozen=True)
class Preconditioning:
    """EDM network preconditioning: D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise, label)."""

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self):
        if not (self.sigma_data > 0 and 0 < self.sigma_min < self.sigma_max < math.inf):
            raise InputError(f"need sigma_data > 0 and 0 < sigma_min < sigma_max < inf, got {self}")

    def c_skip(self, sigma: float) -> float:
        return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)

    def c_out(self, sigma: float) -> float:
        return sigma * self.sigma_data / (sigma**2 + self.sigma_data**2) ** 0.5

    def c_in(self, sigma: float) -> float:
        return 1.0 / (sigma**2 + self.sigma_data**2) ** 0.5

    def c_noise(self, sigma: float) -> float:
        return math.log(sigma) / 4.0

    kind = "edm"

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    @staticmethod
    def from_dict(d: dict) -> Preconditioning:
        d = dict(d)
        kind = d.pop("kind", "edm")
        kinds = {"edm": Preconditioning, "consistency": ConsistencyPreconditioning}
        if kind not in kinds:
            raise InputError(f"unknown preconditioning kind {kind!r}; expected one of {sorted(kinds)}")
        unknown = sorted(set(d) - {f.name for f in fields(Preconditioning)})
        if unknown:
            raise InputError(f"unknown preconditioning fields {unknown}; "
                             f"expected {[f.name for f in fields(Preconditioning)]}")
        return kinds[kind](**d)


@dataclass(frozen=True)
class ConsistencyPreconditioning(Preconditioning):
    """Consistency-model parametrisation (Song et al. 2023, App. C): c_skip(σ_min) = 1, c_out(σ_min) = 0, so
    f(x, σ_min) = x holds by construction (the boundary condition)."""

    kind = "consistency"

    def c_skip(self, sigma: float) -> float:
        return self.sigma_data**2 / ((sigma - self.sigma_min) ** 2 + self.sigma_data**2)

    def c_out(self, sigma: float) -> float:
        return (sigma - self.sigma_min) * self.sigma_data / (sigma**2 + self.sigma_data**2) ** 0.5


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
