"""Bring your own model: a local diffusers `UNet2DModel` directory as an EDM network the host sampler can drive."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from edgediff.errors import InputError, ModelFileError, require
from edgediff.format.precond import Preconditioning


class VPEpsilonAsEDM(torch.nn.Module):
    """An ε-prediction VP model (DDPM ᾱ schedule, Ho et al. 2020) as the EDM network F(c_in·x, c_noise(σ)).

    With σ = exp(4t) and x = x_in·√(σ²+σ_d²): D = x − σ·ε(x/√(σ²+1), t_DDPM(σ)) (Karras et al. 2022, Table 1),
    and F = (D − c_skip·x)/c_out simplifies to (σ·x_in − ε·√(σ²+σ_d²))/σ_d (no division by a small c_out).
    """

    def __init__(self, unet, alphas_cumprod, *, sigma_data: float = 0.5):
        super().__init__()
        self.unet, self.sigma_data = unet, sigma_data
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        self.register_buffer("log_sigmas", ((1 - ac) / ac).sqrt().log().float(), persistent=False)

    def timestep(self, log_sigma: torch.Tensor) -> torch.Tensor:
        """The fractional DDPM timestep with this σ, by linear interpolation in log σ."""
        n = self.log_sigmas.shape[0]
        idx = (log_sigma[:, None] >= self.log_sigmas[None, :]).sum(1).clamp(1, n - 1) - 1
        lo, hi = self.log_sigmas[idx], self.log_sigmas[idx + 1]
        return idx.float() + ((log_sigma - lo) / (hi - lo)).clamp(0, 1)

    def forward(self, x_in, t, label=None):
        log_sigma = 4 * t
        sigma = log_sigma.exp()[:, None, None, None]
        root = (sigma**2 + self.sigma_data**2).sqrt()
        eps = self.unet(x_in * root / (sigma**2 + 1).sqrt(), self.timestep(log_sigma)).sample
        return (sigma * x_in - eps * root) / self.sigma_data

    def precond(self) -> Preconditioning:
        """EDM preconditioning spanning exactly the σ range the DDPM schedule was trained on."""
        lo, hi = self.log_sigmas.min().item(), self.log_sigmas.max().item()
        return Preconditioning(sigma_data=self.sigma_data, sigma_min=math.exp(lo), sigma_max=math.exp(hi))


def is_diffusers_dir(path) -> bool:
    """A folder holding a diffusers UNet2DModel config (as written by `save_pretrained`)."""
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("_class_name") == "UNet2DModel"
    except (OSError, ValueError, AttributeError):
        return False


def load_diffusers(path) -> tuple[VPEpsilonAsEDM, dict]:
    """Load a local UNet2DModel (safetensors only) + its DDPM schedule → (EDM network, description)."""
    diffusers = require("diffusers", "diffusers")
    path = Path(path)
    if not (path / "diffusion_pytorch_model.safetensors").is_file():
        raise ModelFileError(f"{path} has no diffusion_pytorch_model.safetensors; only safetensors weights are read")
    try:
        unet = diffusers.UNet2DModel.from_pretrained(path, use_safetensors=True).eval()
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelFileError(f"{path}: unreadable diffusers UNet2DModel ({type(e).__name__}: {e})") from None
    c = unet.config
    if c.num_class_embeds or c.class_embed_type:
        raise InputError(f"{path}: class-conditional UNet2DModels are not supported yet; expected an unconditional one")
    if c.sample_size is None or isinstance(c.sample_size, list | tuple):
        raise InputError(f"{path}: expected a square integer sample_size, got {c.sample_size!r}")
    sched_dir = next((d for d in (path, path.parent / "scheduler") if (d / "scheduler_config.json").is_file()), None)
    try:
        sched = (diffusers.DDPMScheduler.from_pretrained(sched_dir) if sched_dir else diffusers.DDPMScheduler())
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{sched_dir}: unreadable scheduler_config.json ({e})") from None
    if sched.config.prediction_type != "epsilon":
        raise InputError(f"{path}: prediction_type {sched.config.prediction_type!r} is not supported; expected epsilon")
    net = VPEpsilonAsEDM(unet, sched.alphas_cumprod).eval()
    desc = {"name": path.name, "diffusers": "UNet2DModel", "channels": c.in_channels, "resolution": c.sample_size}
    return net, desc
