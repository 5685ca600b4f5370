"""σ-space samplers, k-diffusion style: pure functions of a Denoiser `(x, sigma) -> x0`.

They touch `x` only with + - * and an injected `noise(shape)` callable, so the same code runs on numpy arrays at
deploy time (every runtime) and on torch tensors at training time. σ arithmetic uses Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgediff.errors import InputError
from edgediff.sampling.schedules import schedule

Callback = Callable[[int, float, object, object], None]  # (step, sigma, x, x0_estimate)




def euler_step(x, x0, s, s_next):
    """x at σ = s_next from x at σ = s given D(x, s) = x0: one Euler step of the probability-flow ODE, which is
    deterministic DDIM (Song et al. 2021) in σ-space. σ is a float or per sample (broadcastable against x)."""
    return x0 + (x - x0) * (s_next / s)


def heun_step(denoiser, x, x0, s, s_next):
    """Heun's 2nd-order step (Karras et al. 2022, Algorithm 1) from σ = s to s_next > 0, given D(x, s) = x0."""
    d = (x - x0) * (1.0 / s)
    x_next = x + d * (s_next - s)
    d_next = (x_next - denoiser(x_next, s_next)) * (1.0 / s_next)
    return x + (d + d_next) * (0.5 * (s_next - s))


def sample_euler(denoiser, x, sigmas, *, noise=None, callback: Callback | None = None):
    """Euler steps of the probability-flow ODE = deterministic DDIM (Song et al. 2021) in σ-space."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        x0 = denoiser(x, s)
        if callback:
            callback(i, s, x, x0)
        x = euler_step(x, x0, s, s_next)
    return x


def sample_heun(denoiser, x, sigmas, *, noise=None, callback: Callback | None = None):
    """Heun's 2nd-order ODE sampler (Karras et al. 2022, Algorithm 1, deterministic)."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        x0 = denoiser(x, s)
        if callback:
            callback(i, s, x, x0)
        x = heun_step(denoiser, x, x0, s, s_next) if s_next > 0 else x + (x - x0) * (1.0 / s) * (s_next - s)
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


def sample_tcd(denoiser, x, sigmas, *, noise=None, callback: Callback | None = None, gamma: float = 0.3):
    """Strategic stochastic sampling of a consistency model (TCD, Zheng et al. 2024): denoise, step along the
    predicted noise to σ' = (1 − γ)·σ_{i+1} (DDIM), re-noise from σ' to σ_{i+1}. γ = 1 is multistep consistency
    sampling (fresh noise), γ = 0 deterministic DDIM over the consistency σ levels. TCD sets σ' on the timestep
    index (t_s = ⌊(1 − γ)·t_{i+1}⌋); σ-space students have no index, so γ scales σ."""
    if not 0.0 <= gamma <= 1.0:
        raise InputError(f"tcd gamma must be in [0, 1], got {gamma}")
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        x0 = denoiser(x, s)
        if callback:
            callback(i, s, x, x0)
        if s_next == 0:
            x = x0
            continue
        s_prime = (1.0 - gamma) * s_next
        x = euler_step(x, x0, s, s_prime) if s_prime > 0 else x0
        if gamma > 0:
            if noise is None:
                raise InputError("sample_tcd needs noise=callable(shape) when gamma > 0")
            x = x + noise(x0.shape) * math.sqrt(s_next**2 - s_prime**2)
    return x


def sample_lcm(denoiser, x, sigmas, *, noise=None, callback: Callback | None = None):
    """LCM multistep sampling (Luo et al. 2023, Algorithm 3): denoise, re-noise to exactly the next σ, repeat —
    what diffusers' LCMScheduler does (its c_skip/c_out boundary terms are < 1e-7 away from D at its timesteps)."""
    return sample_consistency(denoiser, x, sigmas, noise=noise, callback=callback, sigma_min=0.0)


def sample_euler_ancestral(denoiser, x, sigmas, *, noise=None, callback: Callback | None = None):
    """Euler ancestral sampling (η = 1; k-diffusion's sample_euler_ancestral, after Song et al. 2021): an Euler
    step down to σ_down, then fresh noise up to σ_next, as diffusers' EulerAncestralDiscreteScheduler does."""
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        x0 = denoiser(x, s)
        if callback:
            callback(i, s, x, x0)
        up = min(s_next, math.sqrt(max(s_next**2 * (s**2 - s_next**2) / s**2, 0.0)))
        down = math.sqrt(max(s_next**2 - up**2, 0.0))
        x = euler_step(x, x0, s, down)
        if up > 0:
            if noise is None:
                raise InputError("sample_euler_ancestral needs noise=callable(shape)")
            x = x + noise(x.shape) * up
    return x


SAMPLERS = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "consistency": sample_consistency,
    "lcm": sample_lcm,
    "tcd": sample_tcd,
    "euler_ancestral": sample_euler_ancestral,
}


def get_sampler(name: str):
    try:
        return SAMPLERS[name]
    except KeyError:
        raise InputError(f"unknown sampler {name!r}; expected one of {sorted(SAMPLERS)}") from None






def sample(denoiser, shape: tuple[int, ...], *, sampler: str = "dpmpp_2m", steps: int = 10,
           rng: np.random.Generator, sigma_min: float = 0.002, sigma_max: float = 80.0,
           callback: Callback | None = None, sigmas=None, gamma: float | None = None) -> np.ndarray:
    """Draw x_T ~ N(0, σ_max²) from `rng` and run a sampler: one seed gives one image on every runtime."""
    fn = get_sampler(sampler)
    if not shape or any(int(d) < 1 for d in shape):
        raise InputError(f"sample shape {tuple(shape)} must have dimensions >= 1")
    sigmas = schedule(sampler, steps, sigma_min=sigma_min, sigma_max=sigma_max, sigmas=sigmas)

    def noise(s):
        return rng.standard_normal(s, dtype=np.float32)
    x = noise(shape) * np.float32(sigmas[0])
    extra = {"sigma_min": sigma_min} if fn is sample_consistency else {}  # it re-noises to √(σ² − σ_min²)
    if fn is sample_tcd and gamma is not None:
        extra["gamma"] = float(gamma)
    return fn(denoiser, x, sigmas, noise=noise, callback=callback, **extra)
