"""Hardened JSON reading: JSON only (never anything else), size-capped, UTF-8, no NaN/Infinity unless asked, depth
limited; every problem is a ModelFileError naming the file."""

from __future__ import annotations

import json
from pathlib import Path

from edgediff.errors import ModelFileError

MAX_JSON_BYTES = 16 << 20  # configs and artifact.json are kilobytes; refuse memory bombs


MAX_DEPTH = 32


def read_json(file: Path, *, allow_nan: bool = False, max_bytes: int = MAX_JSON_BYTES):
    """Parse a JSON file (never anything else); oversized, non-UTF-8, NaN/Infinity or deeply nested → ModelFileError."""
    file = Path(file)
    try:
        if file.stat().st_size > max_bytes:
            raise ModelFileError(f"{file} is {file.stat().st_size} bytes; expected a JSON file under {max_bytes}")
        return loads(file.read_bytes().decode("utf-8"), where=str(file), allow_nan=allow_nan)
    except UnicodeDecodeError as e:
        raise ModelFileError(f"{file} is not UTF-8 JSON ({e})") from None
    except OSError as e:
        raise ModelFileError(f"{file} cannot be read ({e.strerror or e})") from None


def loads(text: str, *, where: str, allow_nan: bool = False):
    def refuse(name):
        raise ValueError(f"{name} is not valid JSON; expected finite numbers")

    try:
        value = json.loads(text, **({} if allow_nan else {"parse_constant": refuse}))
    except RecursionError:
        raise ModelFileError(f"{where} is nested too deeply; expected at most {MAX_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError is a ValueError
        raise ModelFileError(f"{where} is not readable JSON ({e})") from None
    if _depth(value) > MAX_DEPTH:
        raise ModelFileError(f"{where} is nested too deeply; expected at most {MAX_DEPTH} levels")
    return value


def _depth(v, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(v, dict):
        return max((_depth(e, level + 1) for e in v.values()), default=level + 1)
    if isinstance(v, list):
        return max((_depth(e, level + 1) for e in v), default=level + 1)
    return level
