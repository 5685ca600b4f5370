"""What artifact.json may hold: schema_version range, known fields and types, spec shapes, hashes, safe names."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from edgediff.errors import ModelFileError
from edgediff.format.configs import Request
from edgediff.format.inputs import COMPONENT_INPUTS, DENOISER_INPUTS
from edgediff.format.precond import Preconditioning, precond_class
from edgediff.format.schema import _show, hints, required, section_problems

ARTIFACT_SCHEMA_VERSIONS = (1, 1)  # the artifact.json schema_version range this edgediff reads (inclusive)
DTYPES = ("float32", "float16", "int32", "int64")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_artifact(meta, where: str, cls: type) -> dict:
    """Validate a parsed artifact.json against the dataclass `cls` (format.artifact.Artifact): schema_version,
    known fields and types, spec, hashes, safe file names."""

    lo, hi = ARTIFACT_SCHEMA_VERSIONS
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or not lo <= version <= hi:
        raise ModelFileError(f"{where} has schema_version {_show(version)}; this edgediff reads "
                             f"schema_version {lo} to {hi} (re-run `edgediff convert` with this version)")
    fields = {k: v for k, v in hints(cls).items() if k != "path"}
    missing = sorted((required(cls) - {"path"}) - set(meta))
    problems = [f"missing fields {missing}"] if missing else []
    problems += section_problems("artifact", fields, meta)  # "path" is where the file lies, never stored in it
    if not problems:
        problems = _artifact_value_problems(meta, DTYPES)
    if problems:
        raise ModelFileError(f"{where} is invalid: " + "; ".join(problems[:4]))
    return meta


def _artifact_value_problems(meta: dict, dtypes) -> list[str]:
    problems = []
    names = [*meta["sha256"], meta["model_file"]]
    bad = [n for n in names if not safe_name(n)]
    if bad:
        problems.append(f"unsafe file names {bad[:3]}; expected relative paths inside the artifact directory")
    if any(not _HEX64.fullmatch(h) for h in meta["sha256"].values()):
        problems.append("sha256 values must be 64 lowercase hex digits")
    spec = meta["spec"]
    if set(spec) not in [set(names) for names in (*DENOISER_INPUTS, *COMPONENT_INPUTS)]:
        problems.append(f"spec names inputs {sorted(spec)}; expected x, t[, label[, w]] (or a text-to-image "
                        f"component's: ids | x, t, context[, w] | z)")
    for name, (shape, dtype) in spec.items():
        if not 1 <= len(shape) <= 8 or any(not 1 <= d <= 65536 for d in shape) or dtype not in dtypes:
            problems.append(f"spec.{name} = {_show([shape, dtype])}; expected 1-8 dims in 1..65536 and a "
                            f"dtype in {list(dtypes)}")
    if not problems and "x" in spec and (len(spec["x"][0]) != 4 or spec["t"][0] != spec["x"][0][:1]):
        problems.append(f"spec x must be [B,C,H,W] and t [B]; got {_show(spec)}")
    if meta.get("precond") is not None:
        problems += section_problems("precond", precond_class(meta["precond"]), meta["precond"])
        if not problems:
            try:
                Preconditioning.from_dict(meta["precond"])
            except (TypeError, ValueError) as e:  # e.g. sigma_min >= sigma_max
                problems.append(str(e))
    if meta.get("sampler_defaults") is not None:
        problems += section_problems("sampler_defaults", Request, meta["sampler_defaults"])
    return problems


def safe_name(name) -> bool:
    """A canonical relative POSIX path that stays inside its directory (no '..', '.', '//', '\\', NUL, absolute)."""
    if not isinstance(name, str) or not name or len(name) > 1024 or "\\" in name or "\x00" in name:
        return False
    p = PurePosixPath(name)
    return str(p) == name and not p.is_absolute() and all(part not in (".", "..") for part in p.parts)
