"""σ schedules in EDM's σ-space: the Karras et al. 2022 grid and what each sampler visits. Python floats, so the
same schedule drives numpy (deploy) and torch (training, distillation)."""

from __future__ import annotations

import math
import numbers

from edgediff.errors import InputError
from edgediff.format.configs import check_sigmas


def karras_sigmas(n: int, *, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> list[float]:
    """n noise levels from sigma_max to sigma_min spaced as in Karras et al. 2022 (Eq. 5), followed by 0."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise InputError(f"steps must be an integer >= 1, got {n!r}")
    if not 0 < sigma_min < sigma_max < math.inf:
        raise InputError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
    if not rho > 0:
        raise InputError(f"rho must be > 0, got {rho}")
    n = int(n)
    if n == 1:
        return [float(sigma_max), 0.0]
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return [(hi + i / (n - 1) * (lo - hi)) ** rho for i in range(n)] + [0.0]


def schedule(sampler: str, steps: int, *, sigma_min: float = 0.002, sigma_max: float = 80.0,
             sigmas=None) -> list[float]:
    """The σ a sampler visits: Karras for ODE solvers; for consistency models (and TCD) the Karras levels of steps+1
    points without σ_min (denoising at σ_min is the identity), so 1 step = [σ_max, 0], 2 = [σ_max, 2.5, 0].

    `sigmas` (steps+1 values, decreasing, ending in 0) replaces the formula: a schedule tuned for one model, as
    Song et al. 2023 tune a consistency model's intermediate σ by search.
    """
    if sigmas is not None:
        return check_sigmas(sigmas, steps)
    if sampler in ("consistency", "lcm", "tcd"):
        return karras_sigmas(steps + 1, sigma_min=sigma_min, sigma_max=sigma_max)[:-2] + [0.0]
    return karras_sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_max)
