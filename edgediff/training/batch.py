"""What a loss function sees at one step of the training loop (`Batch`), and the loss-function type itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Batch:
    """What a loss function sees at one step: this rank's rows of the global batch.

    net    the module to call for the forward pass that carries gradients (DistributedDataParallel under torchrun)
    ema    the EMA copy (unwrapped, no grad)
    x0     images [b, C, H, W] on the device; b = batch_size / world
    label  labels [b] on the device after class dropout (dropped ones are the net config's null_label)
    gen    CPU generator seeded from (seed, step) only: the same stream on every rank
    step   the optimizer step being taken (0-based)
    rows   this rank's rows of the global batch, slice(rank, None, world); slice(None) in a single process
    size   the global batch size (= len(x0) in a single process)

    Per-sample randoms must come from `rand`/`randn`/`randint`: they draw for the whole global batch from `gen`
    and return this rank's rows, so N ranks × B/N see exactly the randoms that 1 rank × B sees. Per-step scalars
    may be drawn from `gen` directly (identical on every rank). The module's own randomness (UNet dropout) uses
    torch's global generator, seeded per (seed, step, rank).
    """

    net: torch.nn.Module
    ema: torch.nn.Module
    x0: torch.Tensor
    label: torch.Tensor
    gen: torch.Generator
    step: int
    rows: slice = field(default_factory=lambda: slice(None))
    size: int = 0

    def __post_init__(self):
        self.size = self.size or len(self.x0)

    def rand(self, *shape: int) -> torch.Tensor:
        """U[0, 1) of shape [b, *shape] on the device."""
        return torch.rand(self.size, *shape, generator=self.gen)[self.rows].to(self.x0.device)

    def randn(self, *shape: int) -> torch.Tensor:
        """N(0, 1) of shape [b, *shape] on the device."""
        return torch.randn(self.size, *shape, generator=self.gen)[self.rows].to(self.x0.device)

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        """Integers in [0, high) of shape [b, *shape] on the device."""
        return torch.randint(high, (self.size, *shape), generator=self.gen)[self.rows].to(self.x0.device)


LossFn = Callable[[Batch], torch.Tensor]  # a scalar: the mean over this rank's rows (DDP averages the ranks)
