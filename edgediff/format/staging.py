"""Building an artifact directory atomically: stage into a temp dir beside `out_dir`, hash, write artifact.json,
rename into place — a failed parity gate or a crash never leaves a half-written artifact."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path

from edgediff.errors import InputError, ModelFileError
from edgediff.format.artifact import ARTIFACT_FILE, SIDECARS, Artifact, Header, _holds, list_files, read
from edgediff.format.files import file_sha256, remove_stale_temps, temp_name


def reusable(out_dir: os.PathLike, header: Header) -> Artifact | None:
    """The artifact already in `out_dir` if it was built from the same inputs (same key), else None."""
    out_dir = Path(out_dir)
    if not (out_dir / ARTIFACT_FILE).is_file():
        return None
    try:
        art = read(out_dir)
    except ModelFileError:
        return None
    return art if art.source.get("key") == header.key else None


@contextlib.contextmanager
def staging(out_dir: os.PathLike):
    """Yield an empty temp dir beside `out_dir`; it is removed unless `commit` moved it into place."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir())
                                                       and not (out_dir / ARTIFACT_FILE).is_file())):
        raise InputError(f"{out_dir} exists and is not an artifact directory; choose a new --out")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir.parent, out_dir.name)  # left by a convert that was killed
    tmp = out_dir.parent / temp_name(out_dir.name, ".tmp")
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def commit(tmp: Path, out_dir: os.PathLike, header: Header, *, model_file: str, op_coverage: dict,
           parity: tuple[float, float] | None) -> Artifact:
    """Hash the staged files, write artifact.json, and move the staged dir onto `out_dir`."""
    out_dir = Path(out_dir)
    hashes = {name: file_sha256(tmp / name) for name in list_files(tmp)}
    db, maxabs = parity if parity else (None, None)
    if not _holds(hashes, model_file):
        raise ModelFileError(f"model file {model_file} was not written into {tmp}")
    art = Artifact(path=out_dir, backend=header.backend, precision=header.precision, spec=header.spec,
                   precond=header.precond, sampler_defaults=header.sampler_defaults,
                   size_bytes=sum((tmp / n).stat().st_size for n in hashes if n not in SIDECARS), sha256=hashes,
                   parity_db=_finite(db), parity_maxabs=_finite(maxabs),
                   op_coverage=op_coverage, source={**header.source, "key": header.key}, model_file=model_file,
                   num_classes=header.num_classes, options=header.options)
    (tmp / ARTIFACT_FILE).write_text(json.dumps(art.to_json(), indent=2, sort_keys=True, allow_nan=False) + "\n")
    _replace_dir(tmp, out_dir)
    return art


def _finite(v: float | None) -> float | None:
    """JSON has no NaN/Infinity: a non-finite parity figure (a broken artifact) is stored as null."""
    return float(v) if v is not None and math.isfinite(v) else None


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` onto `out_dir`; an old artifact there is moved aside first and deleted after."""

    old = None
    if out_dir.exists():
        old = out_dir.parent / temp_name(out_dir.name, ".old")
        old.mkdir()
        os.replace(out_dir, old / "artifact")
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
