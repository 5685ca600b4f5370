"""EDM training (Karras et al. 2022, §5 and Table 1): resumable, EMA, class dropout for CFG, bf16 or fp32.

Every random draw is a pure function of (seed, step), so a run resumed after an interruption sees the same batches
and noise as one that never stopped. Checkpoints are complete directories `ckpt-<step>/` made current by an atomic
`latest` pointer, so a kill at any moment leaves the last complete checkpoint intact.

`run` is the generic loop (any `LossFn`: EDM here, pruning recovery, consistency distillation) and `fit` is `run`
with the EDM loss. Under `torchrun` the same code trains one DistributedDataParallel process per device; the draws
depend on the global batch only, so N processes × batch/N follow the same run as 1 process × batch.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from . import distributed
from .data import ImageData
from .denoiser import Preconditioning
from .errors import InputError
from .unet import UNet, UNetConfig


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 8000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
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
        from . import schema

        schema.check_fields("training", self)


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
_RANK_STRIDE = 1_000_000_007  # keeps every rank's global-generator seed apart from every (seed, step) seed


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
    sd = precond.sigma_data
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
    c_in = 1 / (sigma**2 + sd**2).sqrt()
    x = x0 + sigma[:, None, None, None] * n
    target = (x0 - c_skip[:, None, None, None] * x) / c_out[:, None, None, None]
    dev = next(net.parameters()).device
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        inputs = ((c_in[:, None, None, None] * x).to(dev), (sigma.log() / 4).to(dev), label.to(dev))
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


def batch_indices(step: int, n: int, batch_size: int, seed: int, *, rank: int = 0, world: int = 1) -> np.ndarray:
    """Indices of the global batch at `step` (this rank's slice): a fresh permutation every epoch."""
    per_epoch = max(1, n // batch_size)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    idx = perm[pos * batch_size:(pos + 1) * batch_size] if n >= batch_size else perm[np.arange(batch_size) % n]
    return idx[rank::world]


def fit(model: UNetConfig, cfg: TrainConfig, out: Path, *, data: ImageData, name: str = "model",
        precond: Preconditioning | None = None, resume: bool = True, progress: bool = True,
        device: str = "cpu", extra_meta: dict | None = None) -> Path:
    """Train `model` on `data`; write out/config.json + weights.safetensors (EMA). Returns `out`."""
    precond = precond or Preconditioning()
    _check_data(model, data)
    torch.manual_seed(cfg.seed)
    meta = {"name": name, "precond": precond.to_dict(), "data": cfg.data, "training": asdict(cfg),
            **(extra_meta or {})}
    return run(UNet(model), cfg, out, data=data, loss=edm(precond, cfg), meta=meta, resume=resume,
               progress=progress, device=device)


def run(net: UNet, cfg: TrainConfig, out: Path, *, data: ImageData, loss: LossFn, meta: dict,
        resume: bool = True, progress: bool = True, device: str = "cpu", ema_decay: float | None = None) -> Path:
    """Generic resumable loop: minimise `loss` over `data` with AdamW, warm-up, clipping, EMA and checkpoints.

    `net` is already built (maybe pruned, maybe initialised from a teacher); the EMA starts as a copy of it (or
    both come from out/latest when resuming). Writes ckpt-<step>/ dirs and out/config.json + weights.safetensors
    (the EMA) via checkpoint.save(out, ema, meta). Under torchrun (WORLD_SIZE > 1) each of the N processes takes
    batch_size/N rows of the same global batch, gradients are averaged by DistributedDataParallel, rank 0 alone
    shows progress and writes files, and the ranks are checked to hold identical state at every checkpoint.
    """
    out = Path(out)
    _check_data(net.config, data)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = distributed.setup(device)
    try:
        distributed.local_batch(cfg.batch_size, ctx)
        _loop(net.to(ctx.device), cfg, out, data, loss, meta, resume=resume, progress=progress and ctx.main,
              ctx=ctx, decay=cfg.ema_decay if ema_decay is None else ema_decay)
    finally:
        distributed.teardown(ctx)
    return out


def _loop(net: UNet, cfg: TrainConfig, out: Path, data: ImageData, loss: LossFn, meta: dict, *, resume: bool,
          progress: bool, ctx: distributed.Context, decay: float) -> None:
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"step": 0, "losses": [], "seconds": 0.0}
    if resume:
        state = ckpt.load_training_state(out, net, ema, opt) or state
    distributed.check_same(state["step"], ctx, f"the step to resume from in {out}")
    if state["step"] >= cfg.steps and ctx.main:  # already finished: re-export, in case a kill beat the export
        ckpt.save(out, ema, {**meta, "training_state": {"step": state["step"], "seconds": round(state["seconds"], 1)}})
    model = distributed.wrap(net, ctx)
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    bar, meter, consistent = _progress(progress, cfg.steps, state["step"]), _Meter(ctx), True
    try:
        while state["step"] < cfg.steps:
            step, consistent = state["step"], False
            idx = torch.from_numpy(batch_indices(step, len(images), cfg.batch_size, cfg.seed, rank=ctx.rank,
                                                 world=ctx.world))
            batch = _batch(model, ema, images[idx], labels[idx], cfg, ctx, step, null_label=net.config.null_label)
            value = _step(batch, net, opt, loss, cfg, min(decay, (1 + step) / (10 + step)))
            state["step"], consistent = step + 1, True
            meter.add(value, len(idx))
            if state["step"] % cfg.log_every == 0 or state["step"] == cfg.steps:
                meter.flush(state, bar)
            bar.update(1)
            if state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.steps:
                _save_state(out, net, ema, opt, state, meta, ctx)
    except KeyboardInterrupt:
        if consistent and ctx.main:  # not mid-step: weights, optimizer and step agree
            _save_state(out, net, ema, opt, state, meta, ctx, check=False)
        raise
    finally:
        bar.close()


def _batch(model, ema, x0, label, cfg: TrainConfig, ctx: distributed.Context, step: int, *,
           null_label: int) -> Batch:
    """This rank's Batch at `step`; class dropout is drawn for the global batch, then sliced."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    torch.manual_seed(cfg.seed * 1_000_003 + step + ctx.rank * _RANK_STRIDE)  # the module's own dropout
    label = label.clone()
    label[torch.rand(cfg.batch_size, generator=gen)[ctx.rows] < cfg.label_dropout] = null_label
    return Batch(model, ema, x0.to(ctx.device), label.to(ctx.device), gen, step, ctx.rows, cfg.batch_size)


def _step(batch: Batch, net: UNet, opt, loss: LossFn, cfg: TrainConfig, decay: float) -> float:
    for g in opt.param_groups:
        g["lr"] = cfg.lr * min(1.0, (batch.step + 1) / max(1, cfg.warmup_steps))
    value = loss(batch)
    opt.zero_grad(set_to_none=True)
    value.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    opt.step()
    _update_ema(batch.ema, net, decay)
    return value.item()


class _Meter:
    """Loss averaged over the log window and all ranks; images/s over all ranks."""

    def __init__(self, ctx: distributed.Context):
        self.ctx, self.window, self.seen, self.t0 = ctx, [], 0, time.perf_counter()

    def add(self, loss: float, images: int) -> None:
        self.window.append(loss)
        self.seen += images

    def flush(self, state: dict, bar) -> None:
        elapsed = time.perf_counter() - self.t0
        loss = distributed.mean(float(np.mean(self.window)), self.ctx)
        state["seconds"] += elapsed
        state["losses"].append([state["step"], loss])
        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{self.seen * self.ctx.world / max(elapsed, 1e-9):.0f}")
        self.window, self.seen, self.t0 = [], 0, time.perf_counter()


def _check_data(model: UNetConfig, data: ImageData) -> None:
    shape = tuple(data.images.shape[1:])
    want = (model.in_channels, model.resolution, model.resolution)
    if shape != want:
        raise InputError(f"data images are {shape} but the model expects {want} (channels, height, width)")
    if model.num_classes and data.num_classes > model.num_classes:
        raise InputError(f"data has {data.num_classes} classes but the model embeds {model.num_classes}")


@torch.no_grad()
def _update_ema(ema, net, decay: float) -> None:
    for e, p in zip(ema.parameters(), net.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)


def _progress(enabled: bool, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)


def _save_state(out: Path, net, ema, opt, state: dict, meta: dict, ctx: distributed.Context, *,
                check: bool = True) -> None:
    """Check that all ranks agree, then rank 0 writes the checkpoint while the others wait at a barrier."""
    nets = {"net": _cpu(net.state_dict()), "ema": _cpu(ema.state_dict())}
    optim, groups = _flatten_optimizer(opt.state_dict())
    if check and ctx.world > 1:
        digest = distributed.fingerprint({f"{p}.{k}": v for p, d in {**nets, "optim": optim}.items()
                                          for k, v in d.items()})
        distributed.check_same(digest, ctx, f"weights, EMA and optimizer state at step {state['step']}")
    if ctx.main:  # the checkpoint, then the exported model, and only then the `latest` pointer
        d = _write_state(out, nets, optim, {**state, "param_groups": groups})
        ckpt.save(out, ema, {**meta, "training_state": {"step": state["step"],
                                                          "seconds": round(state["seconds"], 1)}})
        _point_latest(out, d)
    if check:
        distributed.barrier(ctx)


def _cpu(sd: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in sd.items()}


def _write_state(out: Path, nets: dict, optim: dict, state: dict) -> Path:
    """Write ckpt-<step>/ completely (via a temp dir renamed into place) and return it."""
    step = state["step"]
    d = out / f"ckpt-{step:08d}"
    tmp = out / f".ckpt-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ckpt.write_tensors(tmp / "net.safetensors", nets["net"])
    ckpt.write_tensors(tmp / "ema.safetensors", nets["ema"])
    ckpt.write_tensors(tmp / "optim.safetensors", optim)
    ckpt.write_text(tmp / "state.json", json.dumps(state))
    shutil.rmtree(d, ignore_errors=True)
    os.replace(tmp, d)
    return d


def _point_latest(out: Path, d: Path) -> None:
    """Make `d` the checkpoint a resume starts from (atomically), then delete older ones."""
    ckpt.write_text(out / "latest", d.name + "\n")
    for old in out.glob("ckpt-*"):
        if old != d:
            shutil.rmtree(old, ignore_errors=True)


def _flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], list]:
    tensors = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"{idx}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
    return tensors, sd["param_groups"]


def fit_model_config(meta: dict, out: Path, *, resume: bool = True, progress: bool = True,
                     device: str = "cpu", **overrides) -> Path:
    """Train the model a config.json describes ("unet" + "training" + "precond"), with overrides of TrainConfig."""
    from . import data as datasets

    try:
        model = UNetConfig.from_dict(meta["unet"])
        cfg = TrainConfig(**{**meta.get("training", {}), **{k: v for k, v in overrides.items() if v is not None}})
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"invalid model config: {e}") from None
    data = datasets.load(cfg.data, resolution=model.resolution, channels=model.in_channels)
    keep = {k: meta[k] for k in ("sampler_defaults",) if k in meta}
    precond = Preconditioning.from_dict(meta.get("precond", {}))
    return fit(model, cfg, out, data=data, name=meta.get("name", Path(out).name), precond=precond,
               resume=resume, progress=progress, device=device, extra_meta=keep)
