"""The EDM training objective (Karras et al. 2022, §5 and Table 1): λ(σ)-weighted denoising loss on F, with
ln σ ~ N(P_mean, P_std²); optionally plus a teacher-matching term for pruning recovery (Fang et al. 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgediff.format.configs import TrainConfig
from edgediff.format.precond import Preconditioning
from edgediff.training.batch import Batch, LossFn


def edm_loss(net, x0, label, precond: Preconditioning, gen: torch.Generator | None, cfg: TrainConfig, *,
             sigma: torch.Tensor | None = None, n: torch.Tensor | None = None,
             teacher: torch.nn.Module | None = None, distill_weight: float = 1.0) -> torch.Tensor:
    """λ(σ)‖D(x0 + σn, σ) − x0‖² with ln σ ~ N(P_mean, P_std²), written as a unit-weight loss on F.

    σ [b] and the noise n [b, C, H, W] are drawn from `gen` unless given. With a `teacher` (pruning recovery,
    Fang et al. 2023) the loss adds `distill_weight`·‖F − F_teacher‖² on the same inputs.
    """
    b = x0.shape[0]
    if sigma is None:
        sigma = torch.exp(cfg.p_mean + cfg.p_std * torch.randn(b, generator=gen))
    if n is None:
        n = torch.randn(x0.shape, generator=gen)
    c_skip, c_out, c_in = (c(sigma)[:, None, None, None] for c in (precond.c_skip, precond.c_out, precond.c_in))
    x = x0 + sigma[:, None, None, None] * n
    target = (x0 - c_skip * x) / c_out
    dev = next(net.parameters()).device
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        inputs = ((c_in * x).to(dev), precond.c_noise(sigma).to(dev), label.to(dev))
        f = net(*inputs)
    loss = F.mse_loss(f.float(), target.to(dev))
    if teacher is not None:
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            f_teacher = teacher.to(dev)(*inputs)
        loss = loss + distill_weight * F.mse_loss(f.float(), f_teacher.float())
    return loss


def edm(precond: Preconditioning, cfg: TrainConfig, *, teacher: torch.nn.Module | None = None,
        distill_weight: float = 1.0) -> LossFn:
    """`edm_loss` as a LossFn, with σ and noise drawn per sample of the global batch."""

    def loss(b: Batch) -> torch.Tensor:
        sigma = torch.exp(cfg.p_mean + cfg.p_std * b.randn())
        return edm_loss(b.net, b.x0, b.label, precond, None, cfg, sigma=sigma, n=b.randn(*b.x0.shape[1:]),
                        teacher=teacher, distill_weight=distill_weight)

    return loss
