"""Classifier-free guidance (Ho & Salimans 2022) as a Denoiser wrapper, not a sampler feature."""

from __future__ import annotations

import numpy as np

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


def paired_guidance(pair: Denoiser, scale: float) -> Denoiser:
    """Classifier-free guidance in one network call, as diffusers' pipelines make it: `pair` denoises [x; x] with
    [uncond; cond] labels in one batch (a batch-2 UNet artifact runs it as one call, a batch-1 one as two)."""

    def guided(x, sigma):
        u, c = np.split(pair(np.concatenate([x, x]), sigma), 2)
        return u + (c - u) * scale

    return guided
