"""EDM training (Karras et al. 2022, §5 and Table 1): resumable, EMA, class dropout for CFG, bf16 or fp32.

Every random draw is a pure function of (seed, step), so a run resumed after an interruption sees the same batches
and noise as one that never stopped. Checkpoints are complete directories `ckpt-<step>/` made current by an atomic
`latest` pointer, so a kill at any moment leaves the last complete checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as ckpt
from .data import ImageData
from .denoiser import Preconditioning
from .errors import InputError, ModelFileError
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


def edm_loss(net, x0, label, precond: Preconditioning, gen: torch.Generator, cfg: TrainConfig) -> torch.Tensor:
    """λ(σ)‖D(x0 + σn, σ) − x0‖² with ln σ ~ N(P_mean, P_std²), written as a unit-weight loss on F."""
    b = x0.shape[0]
    sigma = torch.exp(cfg.p_mean + cfg.p_std * torch.randn(b, generator=gen))
    n = torch.randn(x0.shape, generator=gen)
    sd = precond.sigma_data
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
    c_in = 1 / (sigma**2 + sd**2).sqrt()
    x = x0 + sigma[:, None, None, None] * n
    target = (x0 - c_skip[:, None, None, None] * x) / c_out[:, None, None, None]
    dev = next(net.parameters()).device
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        f = net((c_in[:, None, None, None] * x).to(dev), (sigma.log() / 4).to(dev), label.to(dev))
    return F.mse_loss(f.float(), target.to(dev))


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
    out = Path(out)
    precond = precond or Preconditioning()
    _check_data(model, data)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = UNet(model).to(device)
    ema = UNet(model).to(device).requires_grad_(False)
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"step": 0, "losses": [], "seconds": 0.0}
    if resume and (out / "latest").is_file():
        state = _load_state(out, net, ema, opt)
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    meta = {"name": name, "precond": precond.to_dict(), "data": cfg.data, "training": asdict(cfg),
            **(extra_meta or {})}
    bar = _progress(progress, cfg.steps, state["step"])
    window, t0, seen = [], time.perf_counter(), 0
    try:
        while state["step"] < cfg.steps:
            step = state["step"]
            idx = torch.from_numpy(batch_indices(step, len(images), cfg.batch_size, cfg.seed))
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout draws from the global generator
            label = labels[idx].clone()
            drop = torch.rand(len(idx), generator=gen) < cfg.label_dropout
            label[drop] = model.null_label
            for g in opt.param_groups:
                g["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            loss = edm_loss(net, images[idx], label, precond, gen, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            _update_ema(ema, net, min(cfg.ema_decay, (1 + step) / (10 + step)))
            state["step"] = step + 1
            window.append(loss.item())
            seen += len(idx)
            if state["step"] % cfg.log_every == 0 or state["step"] == cfg.steps:
                elapsed = time.perf_counter() - t0
                state["seconds"] += elapsed
                state["losses"].append([state["step"], float(np.mean(window))])
                bar.set_postfix(loss=f"{np.mean(window):.4f}", img_s=f"{seen / max(elapsed, 1e-9):.0f}")
                window, t0, seen = [], time.perf_counter(), 0
            bar.update(1)
            if state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.steps:
                _save_state(out, net, ema, opt, state, meta)
    except KeyboardInterrupt:
        _save_state(out, net, ema, opt, state, meta)
        raise
    finally:
        bar.close()
    return out


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


def _save_state(out: Path, net, ema, opt, state: dict, meta: dict) -> None:
    """Write ckpt-<step>/ completely, point `latest` at it atomically, then export the EMA model dir."""
    step = state["step"]
    d = out / f"ckpt-{step:08d}"
    tmp = out / f".ckpt-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ckpt.write_tensors(tmp / "net.safetensors", {k: v.detach().cpu() for k, v in net.state_dict().items()})
    ckpt.write_tensors(tmp / "ema.safetensors", {k: v.detach().cpu() for k, v in ema.state_dict().items()})
    tensors, groups = _flatten_optimizer(opt.state_dict())
    ckpt.write_tensors(tmp / "optim.safetensors", tensors)
    ckpt.write_text(tmp / "state.json", json.dumps({**state, "param_groups": groups}))
    shutil.rmtree(d, ignore_errors=True)
    os.replace(tmp, d)
    ckpt.write_text(out / "latest", d.name + "\n")
    for old in out.glob("ckpt-*"):
        if old != d:
            shutil.rmtree(old, ignore_errors=True)
    ckpt.save(out, ema, {**meta, "training_state": {"step": step, "seconds": round(state["seconds"], 1)}})


def _load_state(out: Path, net, ema, opt) -> dict:
    d = out / (out / "latest").read_text().strip()
    if not (d / "state.json").is_file():
        raise ModelFileError(f"{out}/latest points at {d.name}, which is incomplete; delete {out} to start over")
    net.load_state_dict(ckpt.read_tensors(d / "net.safetensors"))
    ema.load_state_dict(ckpt.read_tensors(d / "ema.safetensors"))
    state = json.loads((d / "state.json").read_text())
    opt.load_state_dict(_unflatten_optimizer(ckpt.read_tensors(d / "optim.safetensors"), state.pop("param_groups")))
    return state


def _flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], list]:
    tensors = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"{idx}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
    return tensors, sd["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": groups}


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
