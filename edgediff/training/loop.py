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
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from edgediff.errors import InputError
from edgediff.format.configs import TrainConfig, UNetConfig
from edgediff.format.precond import Preconditioning
from edgediff.models import checkpoint as ckpt
from edgediff.models.unet import UNet
from edgediff.training import checkpoints, distributed
from edgediff.training import data as datasets
from edgediff.training.batch import Batch, LossFn
from edgediff.training.data import ImageData
from edgediff.training.edm import edm

_RANK_STRIDE = 1_000_000_007  # keeps every rank's global-generator seed apart from every (seed, step) seed


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
        state = checkpoints.load_training_state(out, net, ema, opt) or state
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


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Warm-up, stable, decay (Hägele et al. 2024): linear warm-up, constant lr, then linear to 0 over the last
    `decay_steps` steps (0: constant to the end)."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    left = cfg.steps - step
    return cfg.lr * warm * (min(1.0, left / cfg.decay_steps) if cfg.decay_steps else 1.0)


def _step(batch: Batch, net: UNet, opt, loss: LossFn, cfg: TrainConfig, decay: float) -> float:
    for g in opt.param_groups:
        g["lr"] = learning_rate(cfg, batch.step)
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
    nets = {"net": checkpoints.cpu_state(net.state_dict()), "ema": checkpoints.cpu_state(ema.state_dict())}
    optim, groups = checkpoints.flatten_optimizer(opt.state_dict())
    if check and ctx.world > 1:
        digest = distributed.fingerprint({f"{p}.{k}": v for p, d in {**nets, "optim": optim}.items()
                                          for k, v in d.items()})
        distributed.check_same(digest, ctx, f"weights, EMA and optimizer state at step {state['step']}")
    if ctx.main:  # the checkpoint, then the exported model, and only then the `latest` pointer
        d = checkpoints.write_state(out, nets, optim, {**state, "param_groups": groups})
        ckpt.save(out, ema, {**meta, "training_state": {"step": state["step"],
                                                          "seconds": round(state["seconds"], 1)}})
        checkpoints.point_latest(out, d)
    if check:
        distributed.barrier(ctx)


def fit_unet_config(meta: dict, out: Path, *, resume: bool = True, progress: bool = True,
                    device: str = "cpu", **overrides) -> Path:
    """Train the denoiser a config.json describes ("unet" + "training" + "precond"), with overrides of TrainConfig."""
    try:
        model = UNetConfig.from_dict(meta["unet"])
        cfg = TrainConfig(**{**meta.get("training", {}), **{k: v for k, v in overrides.items() if v is not None}})
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"invalid model config: {e}") from None
    keep = {k: meta[k] for k in ("sampler_defaults",) if k in meta}
    name = meta.get("name", Path(out).name)
    if Path(cfg.data).is_dir():
        model, classes = fit_to_folder(model, cfg.data)
        keep["class_names"] = list(classes)
        if cfg.data != meta.get("training", {}).get("data"):
            name = Path(out).name  # not the config's model: trained on other data
    data = datasets.load(cfg.data, resolution=model.resolution, channels=model.in_channels)
    precond = Preconditioning.from_dict(meta.get("precond", {}))
    return fit(model, cfg, out, data=data, name=name, precond=precond,
               resume=resume, progress=progress, device=device, extra_meta=keep)


def fit_to_folder(model: UNetConfig, folder) -> tuple[UNetConfig, tuple[str, ...]]:
    """The config adapted to an image folder's channels, classes and (when it fits the UNet's levels) image size,
    with a one-line notice of what changed; and the folder's class names."""
    shape = datasets.inspect_folder(folder)
    changes = {}
    if shape.channels != model.in_channels:
        changes.update(in_channels=shape.channels, out_channels=shape.channels)
    if len(shape.classes) != model.num_classes:
        changes["num_classes"] = len(shape.classes)
    if shape.size and shape.size != model.resolution and shape.size % 2 ** (len(model.channels) - 1) == 0 \
            and 8 <= shape.size <= 256:
        changes["resolution"] = shape.size
    if changes:
        import warnings

        from edgediff.errors import EdgediffWarning

        said = ", ".join(f"{k} {getattr(model, k)} → {v}" for k, v in changes.items() if k != "out_channels")
        warnings.warn(f"the config is adapted to the images in {folder}: {said}", EdgediffWarning, stacklevel=3)
    return model.replace(**changes), shape.classes

