"""Quality of colour emoji drawn from prompts, without Inception or CLIP weights: FID/KID (Heusel et al. 2017;
Bińkowski et al. 2018) in the feature space of a small subgroup classifier trained by the project on OpenMoji,
prompt alignment (the share of images whose predicted Unicode subgroup is the prompt's), and a memorisation check
(nearest-training-image distance against held-out images' own; Carlini et al. 2023).

The reference set is the seeded held-out split of the emoji set (the images the held-out captions describe); the
real-vs-real floor is the same statistic for N training images (a fixed draw) against that reference.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.errors import InputError
from edgediff.format import model_dir
from edgediff.measure import quality
from edgediff.training import emoji

SHIPPED = "metric-openmoji"
FLOOR_SEED = 4321
COPY_RMS = 0.02  # nearer than this (RMS over [-1, 1] pixels) to a training image: a copy of it


@dataclass(frozen=True)
class EmojiEvaluation(quality.FidReport):
    """The FidReport, prompt alignment beside real held-out images', and nearest-training distances."""

    alignment: float | None  # share of samples whose predicted subgroup is their prompt's
    aligned_n: int  # samples whose prompt names a known emoji (the alignment's denominator)
    real_alignment: float  # the same share for the real held-out images (their own captions)
    nearest_train: float  # median RMS pixel distance of a sample to its nearest training image
    heldout_nearest_train: float  # the same for real held-out images (unseen, so not memorised)
    copies: float  # share of samples within COPY_RMS of a training image (pixel copies)
    heldout_copies: float  # the same share for held-out images (OpenMoji repeats some artwork across code points)
    note: str = ""

    def to_text(self) -> str:
        lines = [f"FID-proxy {self.fid:.2f} (real-vs-real floor {self.floor_fid:.2f}, N={self.n}, emoji features)",
                 f"KID-proxy {self.kid[0]:.4f} ± {self.kid[1]:.4f} (floor {self.floor_kid[0]:.4f})",
                 f"classifier confidence {self.confidence:.3f}"]
        if self.alignment is not None:
            lines.append(f"prompt alignment {self.alignment:.3f} over {self.aligned_n} samples (real held-out images "
                         f"{self.real_alignment:.3f}; ratio {self.alignment / max(self.real_alignment, 1e-9):.2f})")
        lines.append(f"nearest training image: median {self.nearest_train:.4f} RMS (held-out images "
                     f"{self.heldout_nearest_train:.4f}); copies (within {COPY_RMS} RMS) {self.copies:.1%} of samples, "
                     f"{self.heldout_copies:.1%} of held-out images")
        if self.note:
            lines.append(f"note: {self.note}")
        return "\n".join(lines)


def evaluate_emoji(samples: np.ndarray, prompts=None, *,
                   metric: quality.Metric | str | os.PathLike | None = None) -> EmojiEvaluation:
    """Score generated emoji [N,3,64,64] in [-1,1] drawn from `prompts` (one per sample, one for all, or None)."""
    m = metric if isinstance(metric, quality.Metric) else load_metric(metric)
    x = quality._check_images(samples, m.image_shape)
    n = len(x)
    want = _prompt_labels(prompts, n)  # bad prompts fail before the reference features are computed
    ref = _reference(m)
    feats, probs = m.features(x), m.probs(x)
    floor_fid, floor_kid = _floor(m, n)
    known = want >= 0
    alignment = float(np.mean(probs.argmax(1)[known] == want[known])) if known.any() else None
    train_px, held_nn = _pixels(m)
    near = _nearest(x, train_px)
    notes = [f"N={n} < {quality.SMALL_N}: FID is biased upwards at small N; compare it with the floor, or use KID"
             if n < quality.SMALL_N else ""]
    if prompts is not None and not known.all():
        notes.append(f"{int((~known).sum())} of {n} prompts name no OpenMoji emoji; alignment leaves them out")
    return EmojiEvaluation(n=n, fid=quality.fid(feats, ref["held"]), kid=quality.kid(feats, ref["held"]),
                           floor_fid=floor_fid, floor_kid=floor_kid, confidence=float(probs.max(1).mean()),
                           alignment=alignment, aligned_n=int(known.sum()), real_alignment=ref["accuracy"],
                           nearest_train=float(np.median(near)), heldout_nearest_train=float(np.median(held_nn)),
                           copies=float(np.mean(near < COPY_RMS)), heldout_copies=float(np.mean(held_nn < COPY_RMS)),
                           note="; ".join(t for t in notes if t))


def heldout_prompts(n: int | None = None) -> list[str]:
    """The held-out captions (CLDR names) in split order, cycled to n: what quality is measured on."""
    _, held = emoji.split(emoji.load(resolution=quality.RGB_SHAPE[-1]))
    names = list(held.captions)
    return names if n is None else [names[i % len(names)] for i in range(n)]


def load_metric(path: str | os.PathLike | None = None) -> quality.Metric:
    """Load an emoji metric folder; None means the shipped metric-openmoji."""
    m = _shipped() if path is None else quality.load_metric(Path(path))
    if m.meta.get("data") != "openmoji":
        raise InputError(f"{m.path} is a metric for {m.meta.get('data')!r}; colour images need an emoji metric "
                         f"(the shipped {SHIPPED}, or `edgediff train-metric --data openmoji --out DIR`)")
    return m


@functools.lru_cache(maxsize=1)
def _shipped() -> quality.Metric:
    return quality.load_metric(model_dir.shipped_models_dir() / SHIPPED)


def _data():
    return emoji.split(emoji.load(resolution=quality.RGB_SHAPE[-1]))


def _reference(m: quality.Metric) -> dict:
    """Features of the held-out images (the FID reference) and of the training images; held-out accuracy."""
    if "reference" not in m._cache:
        train, held = _data()
        if list(m.meta.get("classes", [])) != list(train.classes):
            raise InputError(f"{m.path} was trained on other emoji subgroups than this OpenMoji set's "
                             f"{train.num_classes}; retrain it: edgediff train-metric --data openmoji --out DIR")
        accuracy = float(np.mean(m.probs(held.images).argmax(1) == held.labels))
        m._cache["reference"] = {"held": m.features(held.images), "train": m.features(train.images),
                                 "accuracy": accuracy}
    return m._cache["reference"]


def _floor(m: quality.Metric, n: int) -> tuple[float, tuple[float, float]]:
    """FID and KID between min(n, all) training images (fixed draw) and the held-out reference."""
    ref = _reference(m)
    k = min(n, len(ref["train"]))
    if ("floor", k) not in m._cache:
        pick = np.random.default_rng(FLOOR_SEED).choice(len(ref["train"]), k, replace=False)
        m._cache[("floor", k)] = quality.fid(ref["train"][pick], ref["held"]), quality.kid(ref["train"][pick],
                                                                                          ref["held"])
    return m._cache[("floor", k)]


def _pixels(m: quality.Metric) -> tuple[np.ndarray, np.ndarray]:
    """(training images flattened, each held-out image's distance to its nearest training image)."""
    if "pixels" not in m._cache:
        train, held = _data()
        flat = train.images.reshape(len(train), -1)
        m._cache["pixels"] = flat, _nearest(held.images, flat)
    return m._cache["pixels"]


def _nearest(x: np.ndarray, train: np.ndarray, batch: int = 256) -> np.ndarray:
    """RMS pixel distance from each image of x to its nearest row of `train` (flattened images)."""
    t2 = (train.astype(np.float64) ** 2).sum(1)
    out = []
    for i in range(0, len(x), batch):
        q = x[i:i + batch].reshape(-1, train.shape[1]).astype(np.float64)
        d2 = (q ** 2).sum(1)[:, None] + t2[None, :] - 2.0 * q @ train.T
        out.append(np.sqrt(np.clip(d2.min(1), 0.0, None) / train.shape[1]))
    return np.concatenate(out)


def _prompt_labels(prompts, n: int) -> np.ndarray:
    """The subgroup index each sample's prompt names (-1: none or unknown); a str applies to every sample."""
    if prompts is None:
        return np.full(n, -1, np.int64)
    prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
    if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
        raise InputError(f"expected one prompt (text) per sample ({n}) or one for all, got {len(prompts)}")
    table = _caption_table()
    return np.asarray([table.get(p.strip().lower(), -1) for p in prompts], np.int64)


@functools.lru_cache(maxsize=1)
def _caption_table() -> dict[str, int]:
    """caption → subgroup index, for both caption forms the text model trains on ("red apple", "…, food fruit")."""
    data = emoji.load(resolution=quality.RGB_SHAPE[-1])
    return {data.prompt(i, subgroup=s).lower(): int(data.labels[i]) for s in (True, False) for i in range(len(data))}
