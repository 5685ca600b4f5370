"""Training the digit classifier behind FID-proxy (`edgediff train-metric`): a 90% split of mnist5k with ±2 px
shifts; weights and config written like a model directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgediff.errors import InputError
from edgediff.measure.quality import FORMAT, FORMAT_VERSION, HELDOUT, Classifier, Metric
from edgediff.models import checkpoint
from edgediff.training import data as datasets


def fit_metric(out: Path, *, data: str | datasets.ImageData = "mnist5k", epochs: int | None = None, seed: int = 0,
               batch_size: int = 64, lr: float = 2e-3, progress: bool = True) -> dict:
    """Train the metric classifier on a 90% split (±2 px shifts), write weights + config to `out`, return the config
    (data "openmoji": the emoji subgroup classifier, `fit_emoji_metric`)."""
    if data == "openmoji":
        return fit_emoji_metric(out, epochs=30 if epochs is None else epochs, seed=seed, batch_size=batch_size,
                                lr=lr, progress=progress)
    epochs = 8 if epochs is None else epochs
    out, images = Path(out), datasets.load(data) if isinstance(data, str) else data
    if images.images.shape[1:] != (1, 32, 32) or images.num_classes != 10:
        raise InputError(f"the metric trains on 10-class [N,1,32,32] digits, got {images.images.shape} "
                         f"with {images.num_classes} classes")
    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    train, test = datasets.split(images, **HELDOUT)
    torch.manual_seed(seed)
    arch = {"channels": [32, 64, 128], "features": 128, "num_classes": 10}
    net, t0 = Classifier(**arch), time.perf_counter()
    _train(net, train, epochs=epochs, seed=seed, batch_size=batch_size, lr=lr, progress=progress)
    seconds = time.perf_counter() - t0
    accuracy = float(np.mean(Metric(out, net.eval(), {}).probs(test.images).argmax(1) == test.labels))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch, "accuracy": round(accuracy, 4),
            "data": data if isinstance(data, str) else f"custom ({len(images)} images)",
            "split": {**HELDOUT, "train": len(train), "heldout": len(test)}, "epochs": epochs, "seed": seed,
            "train_seconds": round(seconds, 1), "params": sum(p.numel() for p in net.parameters())}
    checkpoint.write_tensors(out / checkpoint.WEIGHTS_FILE, {k: v.contiguous() for k, v in net.state_dict().items()})
    checkpoint.write_text(out / checkpoint.CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    return meta


def fit_emoji_metric(out: Path, *, epochs: int = 30, seed: int = 0, batch_size: int = 64, lr: float = 2e-3,
                     progress: bool = True) -> dict:
    """Train the emoji subgroup classifier behind the colour FID-proxy and prompt alignment on the emoji training
    split (±4 px shifts on white); its held-out accuracy is the real images' prompt alignment."""
    from edgediff.measure.quality import RGB_SHAPE
    from edgediff.training import emoji

    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    out = Path(out)
    train, test = emoji.split(emoji.load(resolution=RGB_SHAPE[-1], progress=_bar if progress else None))
    torch.manual_seed(seed)
    arch = {"channels": [32, 64, 128, 128], "features": 128, "num_classes": train.num_classes, "in_channels": 3}
    net, t0 = Classifier(**arch), time.perf_counter()
    _train(net, train, epochs=epochs, seed=seed, batch_size=batch_size, lr=lr, progress=progress, pad=4, fill=1.0)
    seconds = time.perf_counter() - t0
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": arch, "image_shape": list(RGB_SHAPE),
            "data": "openmoji", "classes": list(train.classes),
            "split": {"held_out_fraction": emoji.HELD_OUT_FRACTION, "seed": emoji.SPLIT_SEED, "train": len(train),
                      "heldout": len(test)}, "epochs": epochs, "seed": seed, "train_seconds": round(seconds, 1),
            "params": sum(p.numel() for p in net.parameters()), "licence": "CC-BY-SA-4.0 (trained on OpenMoji)",
            "attribution": emoji.ATTRIBUTION}
    meta["accuracy"] = round(float(np.mean(Metric(out, net.eval(), meta).probs(test.images).argmax(1)
                                           == test.labels)), 4)
    checkpoint.write_tensors(out / checkpoint.WEIGHTS_FILE, {k: v.contiguous() for k, v in net.state_dict().items()})
    checkpoint.write_text(out / checkpoint.CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    return meta


def _bar(items, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, dynamic_ncols=True)


def _train(net: Classifier, train, *, epochs: int, seed: int, batch_size: int, lr: float, progress: bool,
           pad: int = 2, fill: float = -1.0) -> None:
    from tqdm.auto import tqdm

    x, y = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    steps_per_epoch = -(-len(x) // batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    with tqdm(total=epochs * steps_per_epoch, disable=not progress, desc="train-metric", unit="step",
              dynamic_ncols=True) as bar:
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                loss = F.cross_entropy(net(_shift(x[idx], gen, pad, fill)), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    net.eval()


def _shift(x: torch.Tensor, gen: torch.Generator, pad: int = 2, fill: float = -1.0) -> torch.Tensor:
    """Random translation of each image by up to ±`pad` pixels, filling with background (digits -1, emoji white)."""
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)
    dx, dy = torch.randint(0, 2 * pad + 1, (2, len(x)), generator=gen).tolist()
    h, w = x.shape[-2:]
    return torch.stack([padded[i, :, b:b + h, a:a + w] for i, (a, b) in enumerate(zip(dx, dy, strict=True))])
