"""One process per device under `torchrun`: which rank this is, and the few collectives training needs.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK. Without them (or with WORLD_SIZE=1) training is a plain single
process: no process group, no DistributedDataParallel, and every function here is a no-op. With them, `setup` joins
the process group with `nccl` on CUDA and `gloo` on CPU.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from edgediff.errors import EdgediffError, InputError


class DivergedError(EdgediffError, RuntimeError):
    """Ranks that must agree (step, weights, optimizer state) do not."""


@dataclass(frozen=True)
class Context:
    """This process's place in the job; `rows` is its slice of every global batch."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # True when `setup` created the process group (and `teardown` destroys it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def rows(self) -> slice:
        return slice(self.rank, None, self.world) if self.world > 1 else slice(None)


def rank() -> int:
    """This process's global rank from torchrun's environment (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str | torch.device = "cpu") -> Context:
    """Read torchrun's environment; for more than one process join (or reuse) the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    r, local = rank(), int(os.environ.get("LOCAL_RANK", "0"))
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as e:
        raise InputError(f"device {device!r} is not usable here ({' '.join(str(e).split())[:120]}); "
                         "expected cpu or an available cuda device") from None
    if world <= 1:
        return Context(device=dev)
    if not 0 <= r < world:
        raise InputError(f"RANK={r} is outside 0..WORLD_SIZE-1={world - 1}")
    if dev.type == "cuda":
        dev = torch.device("cuda", local)  # one GPU per process, whatever index --device named
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dist.get_world_size() != world or dist.get_rank() != r:
        raise InputError(f"the process group ({dist.get_rank()}/{dist.get_world_size()}) does not match "
                         f"RANK/WORLD_SIZE ({r}/{world})")
    return Context(r, world, local, dev, owns)


def teardown(ctx: Context) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(net: torch.nn.Module, ctx: Context) -> torch.nn.Module:
    """DistributedDataParallel around `net` (which averages gradients over ranks); `net` itself when single."""
    if ctx.world == 1:
        return net
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def local_batch(batch_size: int, ctx: Context) -> int:
    """Rows per rank; the global batch stays `batch_size` whatever the number of processes."""
    if batch_size % ctx.world:
        raise InputError(f"batch_size {batch_size} is not divisible by the {ctx.world} processes: each takes "
                         f"batch_size/processes rows, so pick a multiple of {ctx.world}")
    return batch_size // ctx.world


def barrier(ctx: Context) -> None:
    if ctx.world > 1:
        dist.barrier(device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def mean(value: float, ctx: Context) -> float:
    """The mean of a per-rank float over all ranks (the same number on every rank)."""
    if ctx.world == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world


def check_same(value, ctx: Context, what: str) -> None:
    """Raise DivergedError on every rank unless all ranks hold an equal (picklable) `value`."""
    if ctx.world == 1:
        return
    values = [None] * ctx.world
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise DivergedError(f"ranks disagree on {what}: {values} (every rank must see the same files and code; "
                            "a multi-node --out must be on a filesystem all nodes share)")


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of named tensors, byte for byte (to check that ranks hold identical state)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
