"""σ-space samplers, k-diffusion style: pure functions of a Denoiser `(x, sigma) -> x0`.

They touch `x` only with + - * and an injected `noise(shape)` callable, so the same code runs on numpy arrays at
deploy time (every runtime) and on torch tensors at training time. σ arithmetic uses Python floats.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from .errors import InputError

Callback = Callable[[int, float, object, object], None]  # (step, sigma, x, x0_estimate)


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


def sample_euler(denoiser, x, sigmas, *, noise=None, callback: Callback | None = None):
    """Euler steps of the probability-flow ODE = deterministic DDIM (Song et al. 2021) in σ-space."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        x0 = denoiser(x, s)
        if callback:
            callback(i, s, x, x0)
        x = x0 + (x - x0) * (s_next / s)
    return x


def sample_heun(denoiser, x, sigmas, *, noise=None, callback: Callback | None = None):
    """Heun's 2nd-order ODE sampler (Karras et al. 2022, Algorithm 1, deterministic)."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        x0 = denoiser(x, s)
        if callback:
            callback(i, s, x, x0)
        d = (x - x0) * (1.0 / s)
        x_next = x + d * (s_next - s)
        if s_next > 0:
            d_next = (x_next - denoiser(x_next, s_next)) * (1.0 / s_next)
            x_next = x + (d + d_next) * (0.5 * (s_next - s))
        x = x_next
    return x


def sample_dpmpp_2m(denoiser, x, sigmas, *, noise=None, callback: Callback | None = None):
    """DPM-Solver++(2M) multistep, data prediction (Lu et al. 2022), as k-diffusion's sample_dpmpp_2m."""
    x0_prev, h_prev = None, None
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        x0 = denoiser(x, s)
        if callback:
            callback(i, s, x, x0)
        if s_next == 0:
            x = x0
            continue
        h = math.log(s) - math.log(s_next)
        x0_d = x0
        if x0_prev is not None:
            r = h_prev / h
            x0_d = x0 * (1 + 1 / (2 * r)) - x0_prev * (1 / (2 * r))
        x = x * (s_next / s) - x0_d * math.expm1(-h)
        x0_prev, h_prev = x0, h
    return x


def sample_consistency(denoiser, x, sigmas, *, noise=None, callback: Callback | None = None,
                       sigma_min: float = 0.002):
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): denoise, re-noise to the next σ, repeat."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        x0 = denoiser(x, s)
        if callback:
            callback(i, s, x, x0)
        if s_next > 0:
            if noise is None:
                raise InputError("sample_consistency needs noise=callable(shape) for more than one step")
            x = x0 + noise(x0.shape) * math.sqrt(max(s_next**2 - sigma_min**2, 0.0))
        else:
            x = x0
    return x


SAMPLERS = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "consistency": sample_consistency,
}


def get_sampler(name: str):
    try:
        return SAMPLERS[name]
    except KeyError:
        raise InputError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}") from None


def schedule(sampler: str, steps: int, *, sigma_min: float = 0.002, sigma_max: float = 80.0,
             sigmas=None) -> list[float]:
    """The σ a sampler visits: Karras for ODE solvers; for consistency models the Karras levels of steps+1
    points without σ_min (denoising at σ_min is the identity), so 1 step = [σ_max, 0], 2 = [σ_max, 2.5, 0].

    `sigmas` (steps+1 values, decreasing, ending in 0) replaces the formula: a schedule tuned for one model, as
    Song et al. 2023 tune a consistency model's intermediate σ by search.
    """
    if sigmas is not None:
        return check_sigmas(sigmas, steps)
    if sampler == "consistency":
        return karras_sigmas(steps + 1, sigma_min=sigma_min, sigma_max=sigma_max)[:-2] + [0.0]
    return karras_sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_max)


def check_sigmas(sigmas, steps: int) -> list[float]:
    """`sigmas` as floats if it is a usable schedule for `steps` steps, else an InputError saying what is wrong."""
    try:
        out = [float(v) for v in sigmas]
    except (TypeError, ValueError):
        raise InputError(f"sigmas must be a list of numbers, got {sigmas!r}") from None
    if len(out) != steps + 1:
        raise InputError(f"sigmas has {len(out)} values; {steps} steps need {steps + 1} (the last one 0)")
    decreasing = all(a > b for a, b in zip(out[:-1], out[1:], strict=True))
    if not all(math.isfinite(v) for v in out) or out[-1] != 0.0 or not decreasing:
        raise InputError(f"sigmas {out} must be finite and strictly decreasing, ending in 0")
    return out


def sample(denoiser, shape: tuple[int, ...], *, sampler: str = "dpmpp_2m", steps: int = 10,
           rng: np.random.Generator, sigma_min: float = 0.002, sigma_max: float = 80.0,
           callback: Callback | None = None, sigmas=None) -> np.ndarray:
    """Draw x_T ~ N(0, σ_max²) from `rng` and run a sampler: one seed gives one image on every runtime."""
    fn = get_sampler(sampler)
    if not shape or any(int(d) < 1 for d in shape):
        raise InputError(f"sample shape {tuple(shape)} must have dimensions >= 1")
    sigmas = schedule(sampler, steps, sigma_min=sigma_min, sigma_max=sigma_max, sigmas=sigmas)

    def noise(s):
        return rng.standard_normal(s, dtype=np.float32)
    x = noise(shape) * np.float32(sigmas[0])
    return fn(denoiser, x, sigmas, noise=noise, callback=callback)
