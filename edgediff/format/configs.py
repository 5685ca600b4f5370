"""The configs that model directories and artifacts record, as frozen keyword-only dataclasses.

Each validates itself once, in `__post_init__`, against the same types and ranges that `format.schema` applies to
config.json and artifact.json, so a bad value is refused the same way whether it comes from Python, the CLI or a
file. Torch-free: the network (`models.unet`), the training loop and the sampler import these, never the reverse.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from edgediff.errors import InputError
from edgediff.format import schema

SAMPLER_NAMES = schema.SAMPLER_NAMES

NORMS = ("group", "group_decomposed")
UPSAMPLES = ("nearest", "bilinear")


@dataclass(frozen=True, kw_only=True)
class UNetConfig:
    """Architecture of a compact UNet; `UNet(config)` + a safetensors file rebuilds a model exactly."""

    resolution: int = 32
    in_channels: int = 1
    out_channels: int = 1
    channels: tuple[int, ...] = (32, 64, 64)
    blocks_per_level: int = 1
    attention_levels: tuple[int, ...] = (2,)
    attention_heads: int = 1
    groups: int = 8
    num_classes: int = 10
    time_embed_dim: int = 128
    dropout: float = 0.0
    norm: str = "group"
    upsample: str = "nearest"
    widths: dict[str, int] = field(default_factory=dict)
    guidance_embed: bool = False  # LCM-style: the guidance scale w is an input, embedded like time
    context_dim: int = 0  # > 0: a text model; every attention block cross-attends to context [B, L, context_dim]

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))
        object.__setattr__(self, "widths", {str(k): int(v) for k, v in dict(self.widths).items()})
        _check_config(self)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"], d["attention_levels"] = list(self.channels), list(self.attention_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        return config_from_dict(cls, d)

    def replace(self, **changes) -> UNetConfig:
        return dataclasses.replace(self, **changes)

    @property
    def null_label(self) -> int:
        """Class index meaning "no label" (classifier-free guidance's unconditional branch)."""
        return self.num_classes


def _check_config(c: UNetConfig) -> None:
    levels = len(c.channels)
    problems = []
    if c.resolution % (2 ** (levels - 1)):
        problems.append(f"resolution {c.resolution} must be divisible by 2**(levels-1) = {2 ** (levels - 1)}")
    if any(a < 0 or a >= levels for a in c.attention_levels):
        problems.append(f"attention_levels {c.attention_levels} must lie in 0..{levels - 1}")
    if c.norm not in NORMS:
        problems.append(f"norm {c.norm!r} must be one of {NORMS}")
    if c.upsample not in UPSAMPLES:
        problems.append(f"upsample {c.upsample!r} must be one of {UPSAMPLES}")
    if c.time_embed_dim % 2 or c.time_embed_dim <= 0:
        problems.append(f"time_embed_dim {c.time_embed_dim} must be a positive even number")
    if min(c.channels + (c.in_channels, c.out_channels, c.blocks_per_level, c.groups)) <= 0:
        problems.append("channels, in/out channels, blocks_per_level and groups must be positive")
    if c.num_classes < 0 or not 0.0 <= c.dropout < 1.0:
        problems.append("num_classes must be >= 0 and dropout in [0, 1)")
    if c.context_dim < 0 or (c.context_dim and c.num_classes):
        problems.append(f"context_dim {c.context_dim} must be >= 0, and a text model (context_dim > 0) has no "
                        f"classes (num_classes 0, got {c.num_classes})")
    if problems:
        raise InputError("invalid UNetConfig: " + "; ".join(problems))


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    steps: int = 8000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    decay_steps: int = 0  # the last N steps take lr linearly to 0 (warm-up, stable, decay); 0 = constant lr
    ema_decay: float = 0.999
    p_mean: float = -1.2
    p_std: float = 1.2
    label_dropout: float = 0.1
    precision: str = "bf16"
    grad_clip: float = 1.0
    seed: int = 0
    data: str = "mnist5k"
    checkpoint_every: int = 500
    log_every: int = 50
    threads: int = 0  # 0 = leave torch's default

    def __post_init__(self):
        if self.precision not in ("bf16", "fp32"):
            raise InputError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise InputError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        schema.check_fields("training", self)


@dataclass(frozen=True, kw_only=True)
class Request:
    """What to draw: n images, seeded; label None cycles 0..classes-1 (one row per class in the grid)."""

    n: int = 100
    seed: int = 0
    sampler: str = "dpmpp_2m"
    steps: int = 10
    guidance: float | None = None  # None: the model's recommended scale
    label: int | None = None
    batch_size: int = 250
    sigmas: tuple[float, ...] | None = None  # None: the sampler's formula (or the model's tuned schedule)
    gamma: float | None = None  # the tcd sampler's γ; None: the model's, else the sampler's 0.3

    def __post_init__(self):
        if self.n < 1 or self.steps < 1 or self.batch_size < 1:
            raise InputError(f"n, steps and batch_size must be >= 1, got {self.n}, {self.steps}, {self.batch_size}")
        if self.sampler not in SAMPLER_NAMES:
            raise InputError(f"unknown sampler {self.sampler!r}; expected one of {sorted(SAMPLER_NAMES)}")
        if self.sigmas is not None:
            object.__setattr__(self, "sigmas", tuple(check_sigmas(self.sigmas, self.steps)))
        if self.guidance is not None and not self.guidance >= 0:
            raise InputError(f"guidance must be >= 0, got {self.guidance}")
        if self.gamma is not None and self.sampler != "tcd":
            raise InputError(f"gamma is the tcd sampler's γ; the sampler is {self.sampler!r} (expected sampler 'tcd')")
        schema.check_fields("sampler_defaults", self)


@dataclass(frozen=True, kw_only=True)
class TrainingState:
    """The `training_state` a trained model dir records (what train.fit wrote last)."""

    step: int = 0
    seconds: float = 0.0


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


def config_from_dict(cls, d):
    """cls(**d) for the JSON form of a config, refusing a non-object or unknown keys with the keys expected."""
    known = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(d, dict):
        raise InputError(f"invalid {cls.__name__}: expected an object with keys from {sorted(known)}")
    if set(d) - known:
        raise InputError(f"unknown {cls.__name__} keys {sorted(set(d) - known)}; expected a subset of {sorted(known)}")
    return cls(**d)
