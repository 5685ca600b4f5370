"""Classifier-free guidance (Ho & Salimans 2022) as a Denoiser wrapper, not a sampler feature."""

from __future__ import annotations

from edgediff.sampling.denoiser import Denoiser


def classifier_free_guidance(cond: Denoiser, uncond: Denoiser, scale: float) -> Denoiser:
    """D = D_uncond + scale·(D_cond − D_uncond); scale 1 is plain conditional (one call), 0 unconditional."""
    if scale == 1.0:
        return cond
    if scale == 0.0:
        return uncond

    def guided(x, sigma):
        u = uncond(x, sigma)
        return u + (cond(x, sigma) - u) * scale

    return guided
