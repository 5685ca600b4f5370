"""Atomic file writes and hashing, torch-free: every file edgediff writes goes to a temp file beside the target
(named after the writing process) and is renamed into place; temps of processes that died mid-write are removed by
the next write of the same target."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from pathlib import Path


def write_text(file: Path, text: str) -> None:
    with atomic_path(file) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_path(file: Path):
    """Yield a temp path beside `file`; rename it onto `file` only if the block finishes.

    The temp file is `.<name>.<pid>-<random>.tmp`: a process killed mid-write leaves it behind, and the next
    `atomic_path` of the same target removes it once that pid no longer runs.
    """
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(file.parent, file.name)
    tmp = file.parent / temp_name(file.name, ".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~umask))
    try:
        yield tmp
        os.replace(tmp, file)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def temp_name(name: str, suffix: str) -> str:
    """A hidden temp name beside `name` that records the writing process: `.<name>.<pid>-<random><suffix>`."""
    return f".{name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def remove_stale_temps(directory: Path, name: str | None = None) -> list[Path]:
    """Delete temp files/dirs (`temp_name`) of `name` (None: any) whose writing process is gone; return them."""
    pattern = re.compile(rf"\.({re.escape(name) if name else '.+'})\.(\d+)-[0-9a-f]{{8}}\.(tmp|old)")
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m and not _alive(int(m.group(2))):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def file_sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
