"""Generated samples on disk: `.npy` (the raw float32 array + `<name>.labels.npy`, never unpickled) or a `.png`
grid, one row per label, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgediff.errors import InputError
from edgediff.format.files import atomic_path


def check_path(path: Path) -> Path:
    """`path` if samples can be saved there (.npy or .png), else an InputError saying what is expected."""
    path = Path(path)
    if path.suffix not in (".npy", ".png"):
        raise InputError(f"output {path} must end in .npy or .png")
    return path


def save(path: Path, images: np.ndarray, labels: np.ndarray | None, *, class_names=()) -> Path:
    """`.npy`: the raw float32 array (+ `<name>.labels.npy`); `.png`: a grid, one row per label if labelled, each
    row headed by its class name when `class_names` are given."""
    path = check_path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, images)
        elif class_names and labels is not None:
            _save_named_rows(tmp, images, labels, tuple(class_names))
        else:
            _save_grid(tmp, images)
    if path.suffix == ".npy" and labels is not None:
        with atomic_path(path.with_suffix(".labels.npy")) as tmp, open(tmp, "wb") as f:
            np.save(f, labels)
    return path


def _save_named_rows(file: Path, images: np.ndarray, labels: np.ndarray, names: tuple[str, ...], *,
                     scale: int = 2) -> None:
    """One row per label (in order of first appearance), its class name written in a left margin."""
    from PIL import Image, ImageDraw

    order = list(dict.fromkeys(int(v) for v in labels))
    rows = [images[labels == lab] for lab in order]
    n, c, h, w = images.shape
    cols = max(len(r) for r in rows)
    text = [names[lab] if 0 <= lab < len(names) else str(lab) for lab in order]
    margin = 6 * max(len(t) for t in text) // scale + 4
    grid = np.ones((len(rows) * (h + 1) + 1, margin + cols * (w + 1) + 1, 3), np.float32)
    for r, row in enumerate(rows):
        for q, img in enumerate(np.clip((row + 1) / 2, 0, 1)):
            tile = img.transpose(1, 2, 0)
            grid[1 + r * (h + 1):1 + r * (h + 1) + h, margin + 1 + q * (w + 1):margin + 1 + q * (w + 1) + w] = \
                tile if c == 3 else np.repeat(tile[..., :1], 3, axis=2)
    im = Image.fromarray((grid * 255).round().astype(np.uint8))
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(im)
    for r, t in enumerate(text):
        draw.text((2, (1 + r * (h + 1)) * scale + max(0, h * scale // 2 - 5)), t, fill=(0, 0, 0))
    im.save(file, format="PNG")


def _save_grid(file: Path, images: np.ndarray, *, scale: int = 2) -> None:
    from PIL import Image

    n, c, h, w = images.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
    for i, img in enumerate(np.clip((images + 1) / 2, 0, 1)):
        r, q = divmod(i, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = img.transpose(1, 2, 0)
    pixels = (grid * 255).round().astype(np.uint8)
    im = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
    im.resize((im.width * scale, im.height * scale), Image.NEAREST).save(file, format="PNG")


def read(path: Path, labels: str | None = "auto") -> tuple[np.ndarray, np.ndarray | None]:
    """Read samples saved by `save` (.npy, never unpickled) and their labels ('auto' = the sidecar file)."""
    images = _read_array(Path(path))
    if labels in (None, "none"):
        return images, None
    side = Path(path).with_suffix(".labels.npy") if labels == "auto" else Path(labels)
    if labels == "auto" and not side.is_file():
        return images, None
    return images, _read_array(side)


def read_prompts(path: Path) -> list[str]:
    """One prompt per line of a UTF-8 text file (blank lines ignored)."""
    if not path.is_file():
        raise InputError(f"{path} does not exist; expected a text file with one prompt per line")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not a readable UTF-8 text file ({e}); expected one prompt per line") from None
    prompts = [line for line in lines if line]
    if not prompts:
        raise InputError(f"{path} holds no prompt; expected one prompt per line")
    return prompts


def _read_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path} does not exist; expected a .npy file written by `edgediff sample`")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path} is not a readable .npy array ({e})") from None
