"""Sample quality without Inception weights: FID/KID in the 128-d feature space of a small shipped digit classifier.

The reference set is a fixed random half of mnist5k; every figure comes with the real-vs-real floor, the same
statistic between N real images of the other half and the reference, so small-N bias is visible beside it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgediff.errors import InputError, ModelFileError
from edgediff.format import model_dir
from edgediff.models import checkpoint
from edgediff.training import data as datasets

FORMAT, FORMAT_VERSION = "edgediff.metric", 1
SHIPPED = "metric-mnist"
HELDOUT = {"test_fraction": 0.1, "seed": 0}  # the classifier's fixed train/held-out split of its data
REFERENCE_SEED, FLOOR_SEED, MAX_FLOOR_N = 1234, 4321, 2500
SMALL_N = 1000
IMAGE_SHAPE = (1, 32, 32)  # what the shipped digit classifier measures
RGB_SHAPE = (3, 64, 64)  # what the shipped emoji classifier measures (quality_emoji)
NOT_RGB = ("FID-proxy measures 1×32×32 grayscale digits (the shipped digit classifier) and, with `edgediff eval`, "
           "3×64×64 RGB emoji drawn from prompts (the shipped emoji classifier); there is no metric for other "
           "image shapes")


def check_measurable(shape: tuple[int, ...], *, instead: str = "drop --eval") -> None:
    """An InputError, before anything is sampled or written, when images of `shape` (C, H, W) cannot be measured."""
    if tuple(shape) != IMAGE_SHAPE:
        raise InputError(f"this model makes {'×'.join(map(str, shape))} images; {NOT_RGB}: {instead}")


class Classifier(nn.Module):
    """Small CNN classifier (digits; emoji subgroups) whose penultimate activations are the FID/KID feature space."""

    def __init__(self, *, channels: tuple[int, ...] = (32, 64, 128), features: int = 128, num_classes: int = 10,
                 in_channels: int = 1):
        super().__init__()
        layers, c_in = [], in_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.embed = nn.Linear(4 * c_in, features)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.embed(self.body(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


@dataclass(frozen=True)
class Metric:
    """A loaded metric classifier; `features` / `probs` map images [N,1,32,32] in [-1,1] to numpy arrays."""

    path: Path
    net: Classifier
    meta: dict
    batch_size: int = 500
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._run(images, self.net.features)

    def probs(self, images: np.ndarray) -> np.ndarray:
        return self._run(images, lambda x: torch.softmax(self.net(x), dim=1))

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the images this classifier measures (digits: 1×32×32; emoji: 3×64×64)."""
        return tuple(self.meta.get("image_shape", IMAGE_SHAPE))

    def _run(self, images: np.ndarray, fn) -> np.ndarray:
        x = _check_images(images, self.image_shape)
        with torch.inference_mode():
            out = [fn(torch.from_numpy(x[i:i + self.batch_size])) for i in range(0, len(x), self.batch_size)]
        return torch.cat(out).double().numpy()


@dataclass(frozen=True)
class FidReport:
    """What every quality report holds: N, FID/KID-proxy with their real-vs-real floors, classifier confidence."""

    n: int
    fid: float
    kid: tuple[float, float]
    floor_fid: float
    floor_kid: tuple[float, float]
    confidence: float

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Evaluation(FidReport):
    """Quality of N generated digits: the FidReport, class balance and label accuracy."""

    histogram: tuple[int, ...]
    accuracy: float | None = None
    per_class_accuracy: tuple[float | None, ...] | None = None
    note: str = ""

    def to_text(self) -> str:
        lines = [f"FID-proxy {self.fid:.2f} (real-vs-real floor {self.floor_fid:.2f}, N={self.n})",
                 f"KID-proxy {self.kid[0]:.4f} ± {self.kid[1]:.4f} (floor {self.floor_kid[0]:.4f})",
                 f"classifier confidence {self.confidence:.3f}"]
        if self.accuracy is not None:
            per = " ".join("-" if a is None else f"{a:.2f}" for a in self.per_class_accuracy)
            lines.append(f"label accuracy {self.accuracy:.3f} (per class 0-9: {per})")
        lines.append("predicted classes " + " ".join(f"{d}:{c}" for d, c in enumerate(self.histogram)))
        if self.note:
            lines.append(f"note: {self.note}")
        return "\n".join(lines)


def fid(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017)."""
    a, b = _check_features(feat_a, feat_b, minimum=2)
    mu_a, mu_b, s_a, s_b = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(s_a)
    # eig(S_a S_b) = eig(S_a^½ S_b S_a^½), which is symmetric PSD, so tr((S_a S_b)^½) = Σ √λ of the latter
    cross = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    tr_sqrt = np.sqrt(np.clip(cross, 0.0, None)).sum()
    return float(max(0.0, np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2.0 * tr_sqrt))


def kid(feat_a: np.ndarray, feat_b: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID: unbiased MMD² with kernel (x·y/d + 1)³, mean ± std over random subsets (Bińkowski et al. 2018)."""
    a, b = _check_features(feat_a, feat_b, minimum=2)
    if subsets < 1 or subset_size < 2:
        raise InputError(f"kid needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m, d, rng, values = min(subset_size, len(a), len(b)), a.shape[1], np.random.default_rng(seed), []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        k_xx, k_yy, k_xy = ((p @ q.T / d + 1.0) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values.append(within - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def evaluate(samples: np.ndarray, labels: np.ndarray | None = None, *,
             metric: Metric | str | os.PathLike | None = None) -> Evaluation:
    """Score generated images [N,1,32,32] in [-1,1] (and their intended labels) against the mnist5k reference."""
    x = _check_images(samples)
    y = _check_labels(labels, len(x)) if labels is not None else None
    m = metric if isinstance(metric, Metric) else load_metric(metric)
    ref = _reference(m)[0]
    feats, probs, n = m.features(x), m.probs(x), len(x)
    floor_fid, floor_kid = _floor(m, n)
    pred = probs.argmax(1)
    acc = per_class = None
    if y is not None:
        acc = float(np.mean(pred == y))
        per_class = tuple(float(np.mean(pred[y == c] == c)) if np.any(y == c) else None for c in range(10))
    note = (f"N={n} < {SMALL_N}: FID is biased upwards at small N; compare it with the floor, or use KID"
            if n < SMALL_N else "")
    return Evaluation(n=n, fid=fid(feats, ref), kid=kid(feats, ref), floor_fid=floor_fid,
                      floor_kid=floor_kid, confidence=float(probs.max(1).mean()),
                      histogram=tuple(int(c) for c in np.bincount(pred, minlength=10)),
                      accuracy=acc, per_class_accuracy=per_class, note=note)


def reference_split(images: datasets.ImageData | None = None) -> tuple[datasets.ImageData, datasets.ImageData]:
    """The fixed (reference, other) halves of mnist5k: FID is taken against the first, floors drawn from the second."""
    images = datasets.load("mnist5k") if images is None else images
    return datasets.split(images, test_fraction=0.5, seed=REFERENCE_SEED)


def _reference(m: Metric) -> tuple[np.ndarray, np.ndarray]:
    if "reference" not in m._cache:
        ref, other = reference_split()
        m._cache["reference"] = (m.features(ref.images), m.features(other.images))
    return m._cache["reference"]


def _floor(m: Metric, n: int) -> tuple[float, tuple[float, float]]:
    """FID and KID between min(n, 2500) real images of the other half (fixed draw) and the reference."""
    key = ("floor", min(n, MAX_FLOOR_N))
    if key not in m._cache:
        ref, other = _reference(m)
        pick = np.random.default_rng(FLOOR_SEED).choice(len(other), min(n, MAX_FLOOR_N, len(other)), replace=False)
        m._cache[key] = fid(other[pick], ref), kid(other[pick], ref)
    return m._cache[key]


def load_metric(path: str | os.PathLike | None = None) -> Metric:
    """Load a metric classifier folder (config.json + weights.safetensors); None means the shipped metric-mnist."""
    return _shipped() if path is None else _load(Path(path))


@functools.lru_cache(maxsize=1)
def _shipped() -> Metric:
    return _load(model_dir.shipped_models_dir() / SHIPPED)


def _load(path: Path) -> Metric:
    config, weights = path / checkpoint.CONFIG_FILE, path / checkpoint.WEIGHTS_FILE
    try:
        meta = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{config} is not readable JSON ({e}); expected a metric folder "
                             f"(train one with `edgediff train-metric --out {path}`)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{config} is not a metric config (expected format {FORMAT!r}, "
                             f"format_version {FORMAT_VERSION})")
    try:
        net = Classifier(**meta["arch"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{config} has an invalid 'arch' ({e}); "
                             "expected channels, features, num_classes") from None
    if not weights.is_file():
        raise ModelFileError(f"{weights} does not exist: expected the metric's trained weights "
                             f"(train them with `edgediff train-metric --out {path}`)")
    checkpoint.load_weights(net, weights)
    return Metric(path, net.eval(), meta)








def _check_images(images, shape: tuple[int, ...] = IMAGE_SHAPE) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[1:] != tuple(shape):
        got = getattr(images, "shape", type(images).__name__)
        raise InputError(f"expected images as a numpy array [N,{','.join(map(str, shape))}] in [-1,1], got {got}"
                         + (f"; {NOT_RGB}" if isinstance(images, np.ndarray) and images.ndim == 4 else ""))
    if not np.issubdtype(images.dtype, np.floating):
        raise InputError(f"expected float images in [-1,1], got dtype {images.dtype}")
    if len(images) < 2 or not np.isfinite(images).all():
        raise InputError(f"expected at least 2 finite images (no NaN/inf), got {len(images)} images")
    return np.ascontiguousarray(images, dtype=np.float32)


def _check_labels(labels, n: int) -> np.ndarray:
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and (y.min() < 0 or y.max() > 9)):
        raise InputError(f"expected {n} integer labels in 0..9 (one per sample), got shape {y.shape}, dtype {y.dtype}"
                         + (f", range {y.min()}..{y.max()}" if y.size and np.issubdtype(y.dtype, np.number) else ""))
    return y.astype(np.int64)


def _check_features(a, b, *, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < minimum:
        raise InputError(f"expected two feature arrays [N,D] with the same D and N >= {minimum}, "
                         f"got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("expected finite features, got NaN or inf")
    return a, b


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
