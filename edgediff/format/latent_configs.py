"""The configs of the latent text-to-image networks — the tiny autoencoder, the tiny text encoder, and the text
model joining that encoder to a cross-attention UNet — as frozen keyword-only dataclasses, torch-free like
`format.configs` (whose UNetConfig the text model holds)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

from edgediff.errors import InputError
from edgediff.format.configs import UPSAMPLES, UNetConfig, config_from_dict


@dataclass(frozen=True, kw_only=True)
class AutoencoderConfig:
    """Architecture of a tiny conv-only autoencoder (TAESD-style); `TinyAutoencoder(config)` + safetensors rebuilds
    it. One stride-2 stage per channel entry after the first: the down-sampling factor is 2**(len(channels) - 1)."""

    SECTION: ClassVar[str] = "autoencoder"  # its key in config.json (a UNet's is "unet")

    resolution: int = 64
    in_channels: int = 3
    latent_channels: int = 4
    channels: tuple[int, ...] = (32, 64, 64)  # encoder, full resolution first
    decoder_channels: tuple[int, ...] = (64, 48, 32)  # decoder, latent resolution first
    blocks: int = 1  # residual blocks per stage
    upsample: str = "bilinear"
    scaling_factor: float = 1.0  # latents are multiplied by it for the diffusion model (measured on the data)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "decoder_channels", tuple(int(c) for c in self.decoder_channels))
        problems = []
        if len(self.channels) < 1 or len(self.decoder_channels) != len(self.channels):
            problems.append(f"channels {self.channels} and decoder_channels {self.decoder_channels} need the same "
                            "number (>= 1) of stages")
        if self.resolution % self.factor or not 8 <= self.resolution <= 1024:
            problems.append(f"resolution {self.resolution} must be in 8..1024 and divisible by {self.factor}")
        if min(self.channels + self.decoder_channels + (self.in_channels, self.latent_channels, self.blocks)) <= 0:
            problems.append("channels, in/latent channels and blocks must be positive")
        if self.upsample not in UPSAMPLES:
            problems.append(f"upsample {self.upsample!r} must be one of {UPSAMPLES}")
        if not (math.isfinite(self.scaling_factor) and self.scaling_factor > 0):
            problems.append(f"scaling_factor must be a positive number, got {self.scaling_factor}")
        if problems:
            raise InputError("invalid AutoencoderConfig: " + "; ".join(problems))

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.resolution // self.factor
        return (self.latent_channels, side, side)

    # what the training loop reads from a network's config
    out_channels = property(lambda self: self.in_channels)
    num_classes = property(lambda self: 0)
    null_label = property(lambda self: 0)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"], d["decoder_channels"] = list(self.channels), list(self.decoder_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AutoencoderConfig:
        return config_from_dict(cls, d)

    def replace(self, **changes) -> AutoencoderConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class TextEncoderConfig:
    """Architecture of the tiny text encoder: CLIP BPE ids (49,408) → a compact vocabulary (the caption tokens seen
    in training, id 0 = unknown) → a small pre-LN causal transformer, CLIP's text tower in miniature."""

    SECTION: ClassVar[str] = "text_encoder"

    vocab_size: int = 2048  # compact ids, 0 = any CLIP token not in the training captions
    max_length: int = 16  # tokens per prompt, BOS and EOS/pad included (CLIP's is 77)
    width: int = 128  # hidden size = the UNet's context_dim
    layers: int = 2
    heads: int = 4
    clip_vocab_size: int = 49408  # the tokenizer's vocabulary the remap table covers

    def __post_init__(self) -> None:
        problems = []
        if min(self.vocab_size, self.max_length, self.width, self.layers, self.heads) <= 0:
            problems.append("vocab_size, max_length, width, layers and heads must be positive")
        elif self.width % self.heads:
            problems.append(f"width {self.width} must be divisible by heads {self.heads}")
        if not 3 <= self.max_length <= 77:
            problems.append(f"max_length {self.max_length} must be in 3..77 (BOS, a token, EOS; CLIP's 77 at most)")
        if self.vocab_size > self.clip_vocab_size:
            problems.append(f"vocab_size {self.vocab_size} exceeds the tokenizer's {self.clip_vocab_size}")
        if problems:
            raise InputError("invalid TextEncoderConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TextEncoderConfig:
        return config_from_dict(cls, d)


@dataclass(frozen=True, kw_only=True)
class TextModelConfig:
    """The project's own text-to-image denoiser: a TinyTextEncoder and the cross-attention UNet reading it, trained
    together on autoencoder latents (`unet.context_dim` = `text_encoder.width`)."""

    SECTION: ClassVar[str] = "text_model"

    text_encoder: TextEncoderConfig
    unet: UNetConfig

    def __post_init__(self) -> None:
        if self.unet.context_dim != self.text_encoder.width:
            raise InputError(f"invalid TextModelConfig: unet.context_dim {self.unet.context_dim} must equal "
                             f"text_encoder.width {self.text_encoder.width}")

    # what the training loop reads from a network's config (captions are not classes: no label embedding)
    in_channels = property(lambda self: self.unet.in_channels)
    resolution = property(lambda self: self.unet.resolution)
    num_classes = property(lambda self: 0)
    null_label = property(lambda self: 0)

    def to_dict(self) -> dict:
        return {"text_encoder": self.text_encoder.to_dict(), "unet": self.unet.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> TextModelConfig:
        if not isinstance(d, dict) or set(d) != {"text_encoder", "unet"}:
            raise InputError("invalid TextModelConfig: expected an object with keys ['text_encoder', 'unet']")
        return cls(text_encoder=TextEncoderConfig.from_dict(d["text_encoder"]), unet=UNetConfig.from_dict(d["unet"]))
