"""Tiny conv-only autoencoder for latent diffusion (TAESD, Bohan 2023; latent diffusion: Rombach et al. 2022).

ReLU residual blocks, stride-2 convs down, 2× upsampling + conv up, no normalisation and no attention, so each half
lowers into one XNNPACK island and one OpenVINO graph without rewrites. The decoder is the half a phone runs per
image; the encoder only makes training latents (and image-to-image). Images are in [-1, 1]; the diffusion model sees
`encode(x) * scaling_factor`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgediff.format.jsonfile import read_json
from edgediff.format.latent_configs import AutoencoderConfig
from edgediff.models import checkpoint as ckpt


def _conv(c_in: int, c_out: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class Block(nn.Module):
    """TAESD's block: three 3×3 convs with ReLUs, a residual connection, a ReLU after the sum."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(c, c), nn.ReLU(), _conv(c, c), nn.ReLU(), _conv(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x) + x)


class Upsample(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


class Encoder(nn.Module):
    """image [B, C, H, W] → latent [B, latent_channels, H/f, W/f] (unscaled)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch = cfg.channels
        layers: list[nn.Module] = [_conv(cfg.in_channels, ch[0]), *(Block(ch[0]) for _ in range(cfg.blocks))]
        for c_prev, c in zip(ch, ch[1:], strict=False):
            layers += [_conv(c_prev, c, stride=2, bias=False), *(Block(c) for _ in range(cfg.blocks))]
        layers.append(_conv(ch[-1], cfg.latent_channels))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """latent [B, latent_channels, h, w] (unscaled) → image [B, C, h·f, w·f] in about [-1, 1]."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch = cfg.decoder_channels
        layers: list[nn.Module] = [_conv(cfg.latent_channels, ch[0]), nn.ReLU()]
        for i, c in enumerate(ch):
            layers += [Block(c) for _ in range(cfg.blocks)]
            if i + 1 < len(ch):
                layers += [Upsample(cfg.upsample), _conv(c, ch[i + 1], bias=False)]
        layers.append(_conv(ch[-1], cfg.in_channels))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.tanh(z / 3.0) * 3.0)  # TAESD's soft clamp of out-of-range latents


class TinyAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, latent); `noise` is added to the latent before decoding (training only)."""
        z = self.encoder(x)
        return self.decoder(z if noise is None else z + noise), z



def load(path) -> TinyAutoencoder:
    """A trained autoencoder directory (config.json with an "autoencoder" section + weights.safetensors)."""
    path = Path(path)
    meta = read_json(path / ckpt.CONFIG_FILE)
    net = TinyAutoencoder(AutoencoderConfig.from_dict(meta[AutoencoderConfig.SECTION]))
    ckpt.load_weights(net, path / ckpt.WEIGHTS_FILE)
    return net.eval()
