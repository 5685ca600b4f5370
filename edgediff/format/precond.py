"""EDM preconditioning (Karras et al. 2022, Table 1): D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise(σ)).

The coefficients take a Python float, a numpy array or a torch tensor alike, so the deploy-time sampler (numpy),
training and distillation (torch) and an app's host code share one formula. Recorded in artifact.json as `precond`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from edgediff.errors import InputError


@dataclass(frozen=True, kw_only=True)
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
        return _log(sigma) / 4.0

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


@dataclass(frozen=True, kw_only=True)
class ConsistencyPreconditioning(Preconditioning):
    """Consistency-model parametrisation (Song et al. 2023, App. C): c_skip(σ_min) = 1, c_out(σ_min) = 0, so
    f(x, σ_min) = x holds by construction (the boundary condition)."""

    kind = "consistency"

    def c_skip(self, sigma: float) -> float:
        return self.sigma_data**2 / ((sigma - self.sigma_min) ** 2 + self.sigma_data**2)

    def c_out(self, sigma: float) -> float:
        return (sigma - self.sigma_min) * self.sigma_data / (sigma**2 + self.sigma_data**2) ** 0.5


def _log(sigma):
    """log σ of a float, a numpy array or a torch tensor (each keeps its own type and dtype)."""
    if isinstance(sigma, float | int):
        return math.log(sigma)
    return sigma.log() if hasattr(sigma, "log") else np.log(sigma)
