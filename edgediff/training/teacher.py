"""The denoiser D(x, σ) in torch for per-sample σ, and the classifier-free guided teacher (Ho & Salimans 2022)
that distillation steps along and trajectories record; any preconditioning kind (EDM or consistency)."""

from __future__ import annotations

import torch

from edgediff.format.precond import Preconditioning


def _c(precond: Preconditioning, sigma: torch.Tensor):
    """(c_skip, c_out, c_in, c_noise) of `precond` for per-sample σ [b], shaped to broadcast over images."""
    s = sigma.double()
    v = lambda c: c.float()[:, None, None, None]  # noqa: E731
    return v(precond.c_skip(s)), v(precond.c_out(s)), v(precond.c_in(s)), precond.c_noise(s).float()


def denoise(net, precond: Preconditioning, x, sigma, label, w=None, *, bf16: bool = False) -> torch.Tensor:
    """D(x, σ) in torch for per-sample σ (any preconditioning kind)."""
    c_skip, c_out, c_in, c_noise = _c(precond, sigma)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        f = net(c_in.to(x.device) * x, c_noise.to(x.device), label) if w is None else \
            net(c_in.to(x.device) * x, c_noise.to(x.device), label, w)
    return c_skip.to(x.device) * x + c_out.to(x.device) * f.float()


def guided_teacher(teacher, precond: Preconditioning, x, sigma, label, w, null_label: int, *, bf16: bool):
    """Classifier-free guided teacher D_u + w(D_c − D_u), cond and uncond in one batched call."""
    both = denoise(teacher, precond, torch.cat([x, x]), torch.cat([sigma, sigma]),
                   torch.cat([label, torch.full_like(label, null_label)]), bf16=bf16)
    cond, uncond = both.chunk(2)
    return uncond + w[:, None, None, None] * (cond - uncond)
