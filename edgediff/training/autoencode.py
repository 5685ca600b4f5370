"""Training the tiny autoencoder (TAESD, Bohan 2023) through the generic resumable loop: L1 + MSE reconstruction
with noise added to the latent (a fixed-variance bottleneck, so the soft-clamped latents carry what survives it)
and a small L2 pull on the latent; then the latent scaling factor and held-out PSNR, measured and recorded.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgediff.errors import InputError
from edgediff.format.configs import TrainConfig
from edgediff.format.files import write_text
from edgediff.format.jsonfile import read_json
from edgediff.format.latent_configs import AutoencoderConfig
from edgediff.format.model_dir import AUTOENCODER_FORMAT
from edgediff.models import checkpoint as ckpt
from edgediff.models.autoencoder import TinyAutoencoder, load  # noqa: F401  (load: re-exported)
from edgediff.training import emoji
from edgediff.training.batch import Batch, LossFn
from edgediff.training.loop import run

LATENT_NOISE = 0.1  # std of the noise added to latents while training
LATENT_PENALTY = 1e-3  # weight of mean(z²)


def reconstruction(cfg: TrainConfig, *, latent_noise: float = LATENT_NOISE,
                   latent_penalty: float = LATENT_PENALTY) -> LossFn:
    """L1 + MSE of the reconstruction of horizontally flipped-at-random images, plus latent_penalty·mean(z²)."""

    def loss(b: Batch) -> torch.Tensor:
        flip = (b.rand() < 0.5)[:, None, None, None]
        x = torch.where(flip, b.x0.flip(-1), b.x0)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            z_shape = b.net.module.config.latent_shape if hasattr(b.net, "module") else b.net.config.latent_shape
            recon, z = b.net(x, latent_noise * b.randn(*z_shape))
        recon, z = recon.float(), z.float()
        return F.l1_loss(recon, x) + F.mse_loss(recon, x) + latent_penalty * z.square().mean()

    return loss


def fit(config: AutoencoderConfig, cfg: TrainConfig, out: Path, *, data, held_out=None, name: str = "autoencoder",
        resume: bool = True, progress: bool = True, device: str = "cpu", extra_meta: dict | None = None) -> Path:
    """Train on `data` (images [N, C, H, W] in [-1, 1]); write out/config.json + weights.safetensors (EMA), then
    measure the scaling factor (1 / std of the training latents) and `held_out` reconstruction PSNR into it."""
    torch.manual_seed(cfg.seed)
    meta = {"name": name, "data": cfg.data, "training": asdict(cfg),
            "loss": {"latent_noise": LATENT_NOISE, "latent_penalty": LATENT_PENALTY}, **(extra_meta or {})}
    out = run(TinyAutoencoder(config), cfg, out, data=data, loss=reconstruction(cfg), meta=meta, resume=resume,
              progress=progress, device=device)
    return finish(out, data.images, None if held_out is None else held_out.images)


def fit_config(meta: dict, out: Path, *, resume: bool = True, progress: bool = True, device: str = "cpu",
               **overrides) -> Path:
    """Train the autoencoder an "edgediff.autoencoder" config describes, on its data's training split (emoji: the
    project's seeded split, the held-out part measured), with overrides of TrainConfig."""
    from edgediff.training import data as datasets

    try:
        config = AutoencoderConfig.from_dict(meta["autoencoder"])
        cfg = TrainConfig(**{**meta.get("training", {}), **{k: v for k, v in overrides.items() if v is not None}})
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"invalid autoencoder config: {e}") from None
    data = datasets.load(cfg.data, resolution=config.resolution, channels=config.in_channels)
    train, held = emoji.split(data) if cfg.data == "openmoji" else datasets.split(data, seed=cfg.seed)
    return fit(config, cfg, out, data=train, held_out=held, name=meta.get("name", Path(out).name),
               resume=resume, progress=progress, device=device,
               extra_meta={"format": AUTOENCODER_FORMAT, **{k: meta[k] for k in ("licence", "attribution")
                                                             if k in meta}})


@torch.no_grad()
def finish(out: Path, train_images: np.ndarray, held_out: np.ndarray | None) -> Path:
    """Record scaling_factor (measured on the training latents) and the reconstruction PSNR in out/config.json."""
    out = Path(out)
    net = load(out)
    z = _batched(net.encode, train_images)
    meta = read_json(out / ckpt.CONFIG_FILE)
    meta[AutoencoderConfig.SECTION]["scaling_factor"] = round(float(1.0 / z.std()), 6)
    quality = {"train_psnr_db": round(psnr(_batched(net, train_images[:512]), train_images[:512]), 2)}
    if held_out is not None:
        quality["held_out_psnr_db"] = round(psnr(_batched(net, held_out), held_out), 2)
        quality["held_out_images"] = len(held_out)
    meta["quality"] = quality
    write_text(out / ckpt.CONFIG_FILE, json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return out


def psnr(recon: np.ndarray, images: np.ndarray) -> float:
    """Mean over images of the PSNR in dB, on [0, 1] pixels (recon clipped as an image would be)."""
    a, b = np.clip((recon + 1) / 2, 0, 1), (images + 1) / 2
    mse = np.mean((a - b) ** 2, axis=tuple(range(1, a.ndim)))
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-12))))


def _batched(fn, images: np.ndarray, batch: int = 256) -> np.ndarray:
    outs = []
    for i in range(0, len(images), batch):
        y = fn(torch.from_numpy(images[i:i + batch]))
        outs.append((y[0] if isinstance(y, tuple) else y).numpy())
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)
