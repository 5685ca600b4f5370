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
    has_null_label = True  # edgediff's UNets learn label == num_classes as "no label" (classifier-free guidance)

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    @staticmethod
    def from_dict(d: dict) -> Preconditioning:
        d = dict(d)
        kind = d.pop("kind", "edm")
        if kind not in KINDS:
            raise InputError(f"unknown preconditioning kind {kind!r}; expected one of {list(KINDS)}")
        cls = precond_class({"kind": kind})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise InputError(f"unknown preconditioning fields {unknown}; expected {names}")
        return cls(**d)

    def base_fields(self) -> dict:
        """σ_data, σ_min, σ_max: what a student distilled from this model inherits."""
        return {f.name: getattr(self, f.name) for f in fields(Preconditioning)}


@dataclass(frozen=True, kw_only=True)
class ConsistencyPreconditioning(Preconditioning):
    """Consistency-model parametrisation (Song et al. 2023, App. C): c_skip(σ_min) = 1, c_out(σ_min) = 0, so
    f(x, σ_min) = x holds by construction (the boundary condition)."""

    kind = "consistency"

    def c_skip(self, sigma: float) -> float:
        return self.sigma_data**2 / ((sigma - self.sigma_min) ** 2 + self.sigma_data**2)

    def c_out(self, sigma: float) -> float:
        return (sigma - self.sigma_min) * self.sigma_data / (sigma**2 + self.sigma_data**2) ** 0.5


KINDS = ("edm", "consistency", "vp")
PREDICTIONS = ("epsilon", "v_prediction", "sample")  # diffusers' prediction_type names


@dataclass(frozen=True, kw_only=True)
class VPPreconditioning(Preconditioning):
    """A discrete-time VP model (DDPM, Ho et al. 2020) in σ-space, as Karras et al. 2022 (Table 1, "VP") run it.

    `sigmas` is the scheduler's own table σ_t = √((1 − ᾱ_t)/ᾱ_t), t = 0..T−1. The network sees x_t = x/√(σ² + 1)
    and its fractional training step t(σ) (linear in log σ between table entries) and returns ε, v or x0 as
    trained; c_skip/c_out turn that into D. At a table σ, one Euler step is exactly diffusers' DDIM step.
    """

    prediction: str = "epsilon"
    sigmas: tuple[float, ...] = ()

    kind = "vp"
    has_null_label = False  # a diffusers class-conditional UNet has only its classes: no guidance

    def __post_init__(self):
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        s = np.asarray(self.sigmas, dtype=np.float64)
        if self.prediction not in PREDICTIONS:
            raise InputError(f"unknown prediction type {self.prediction!r}; expected one of {PREDICTIONS}")
        if len(s) < 2 or not (np.all(np.isfinite(s)) and np.all(s > 0) and np.all(np.diff(s) > 0)):
            raise InputError("a VP σ table needs at least 2 finite, positive, increasing values")
        if (self.sigma_min, self.sigma_max) != (s[0], s[-1]):
            raise InputError(f"sigma_min/sigma_max must be the table's ends {s[0]}, {s[-1]}; got "
                             f"{self.sigma_min}, {self.sigma_max}")
        super().__post_init__()
        object.__setattr__(self, "_log_table", np.log(s))

    @classmethod
    def from_table(cls, sigmas, *, prediction: str = "epsilon", sigma_data: float = 0.5) -> VPPreconditioning:
        sigmas = [float(s) for s in sigmas]
        return cls(sigmas=tuple(sigmas), prediction=prediction, sigma_data=sigma_data, sigma_min=sigmas[0],
                   sigma_max=sigmas[-1])

    def c_in(self, sigma):
        return 1.0 / (sigma**2 + 1) ** 0.5

    def c_skip(self, sigma):  # `0 * sigma +` keeps σ's type (float, numpy or torch) for the constant cases
        return {"epsilon": 0 * sigma + 1.0, "v_prediction": 1.0 / (sigma**2 + 1), "sample": 0 * sigma}[self.prediction]

    def c_out(self, sigma):
        if self.prediction == "epsilon":
            return -sigma
        return -sigma / (sigma**2 + 1) ** 0.5 if self.prediction == "v_prediction" else 0 * sigma + 1.0

    def c_noise(self, sigma):
        """The fractional training timestep whose table σ is `sigma` (float64 interpolation, clamped to the ends)."""
        steps = np.arange(len(self.sigmas), dtype=np.float64)
        if isinstance(sigma, float | int):
            return float(np.interp(np.log(np.float64(sigma)), self._log_table, steps))
        if hasattr(sigma, "detach"):  # torch: through numpy, back on the tensor's device and dtype
            import torch

            t = np.interp(np.log(sigma.detach().cpu().double().numpy()), self._log_table, steps)
            return torch.as_tensor(t, dtype=sigma.dtype, device=sigma.device)
        return np.interp(np.log(np.asarray(sigma, dtype=np.float64)), self._log_table, steps).astype(
            np.asarray(sigma).dtype if np.asarray(sigma).dtype.kind == "f" else np.float64)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["sigmas"] = list(self.sigmas)
        return d

    def table_sigma(self, t) -> float:
        """σ at an integer training timestep t (what diffusers' schedulers step through)."""
        return self.sigmas[int(t)]


def precond_class(d) -> type[Preconditioning]:
    """The dataclass a precond dict's `kind` names (EDM when it names none or an unknown one: that is reported
    by `Preconditioning.from_dict`)."""
    kinds = {"consistency": ConsistencyPreconditioning, "vp": VPPreconditioning}
    return kinds.get(d.get("kind"), Preconditioning) if isinstance(d, dict) else Preconditioning


def _log(sigma):
    """log σ of a float, a numpy array or a torch tensor (each keeps its own type and dtype)."""
    if isinstance(sigma, float | int):
        return math.log(sigma)
    return sigma.log() if hasattr(sigma, "log") else np.log(sigma)
