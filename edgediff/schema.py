"""Schemas of the JSON files edgediff reads: a model's config.json and an artifact's artifact.json.

Known keys and their types come from the frozen dataclasses themselves (`dataclasses.fields` + type hints), so a
field added to `UNetConfig`, `TrainConfig`, `Preconditioning`, `generate.Request` or `Artifact` is accepted (and
type-checked) without touching this file; `RANGES` adds the value ranges a type cannot express. Every problem
raises ModelFileError naming the file, the key path, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from pathlib import Path, PurePosixPath

from .errors import InputError, ModelFileError

MAX_JSON_BYTES = 16 << 20  # configs and artifact.json are kilobytes; refuse memory bombs
MAX_DEPTH = 32
MAX_STR = 4096
DEFAULT_INT = 1 << 20  # range of an int field that RANGES does not mention (new fields)
ARTIFACT_SCHEMA_VERSIONS = (1, 1)  # the artifact.json schema_version range this edgediff reads (inclusive)
MODEL_FORMAT, MODEL_FORMAT_VERSION = "edgediff.model", 1
MAX_PARAMS = 500_000_000  # a config whose UNet would be larger than this is refused before allocating it
_HEX64 = re.compile(r"[0-9a-f]{64}")
_IDENT = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def _between(lo, hi, *, lo_open: bool = False, hi_open: bool = False):
    def ok(v):
        return (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)

    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    return ok, f"in {left}{lo}, {hi}{right}"


def _power_of_two(hi: int):
    return (lambda v: 1 <= v <= hi and v & (v - 1) == 0), f"a power of 2 from 1 to {hi}"


def _one_of(*choices):
    return (lambda v: v in choices), f"one of {list(choices)}"


def _each(check):
    ok, text = check
    return (lambda v: all(ok(e) for e in (v.values() if isinstance(v, dict) else v))), f"each {text}"


def _sampler_name():
    from .sampling import SAMPLERS

    return (lambda v: v in SAMPLERS), f"one of {sorted(SAMPLERS)}"


# (section, field) -> (predicate, description). Types are checked first, so predicates see well-typed values.
RANGES = {
    ("unet", "resolution"): _power_of_two(1024),
    ("unet", "in_channels"): _between(1, 64),
    ("unet", "out_channels"): _between(1, 64),
    ("unet", "channels"): _each(_between(1, 4096)),
    ("unet", "blocks_per_level"): _between(1, 16),
    ("unet", "attention_levels"): _each(_between(0, 15)),
    ("unet", "attention_heads"): _between(1, 64),
    ("unet", "groups"): _between(1, 4096),
    ("unet", "num_classes"): _between(0, 100_000),
    ("unet", "time_embed_dim"): _between(2, 16384),
    ("unet", "dropout"): _between(0.0, 1.0, hi_open=True),
    ("unet", "widths"): _each(_between(1, 4096)),
    ("precond", "sigma_data"): _between(0.0, 1e4, lo_open=True),
    ("precond", "sigma_min"): _between(0.0, 1e4, lo_open=True),
    ("precond", "sigma_max"): _between(0.0, 1e6, lo_open=True),
    ("precond", "kind"): _one_of("edm", "consistency"),
    ("training", "steps"): _between(1, 10**9),
    ("training", "batch_size"): _between(1, 65536),
    ("training", "lr"): _between(0.0, 10.0, lo_open=True),
    ("training", "weight_decay"): _between(0.0, 10.0),
    ("training", "warmup_steps"): _between(0, 10**9),
    ("training", "ema_decay"): _between(0.0, 1.0),
    ("training", "p_mean"): _between(-20.0, 20.0),
    ("training", "p_std"): _between(0.0, 20.0, lo_open=True),
    ("training", "label_dropout"): _between(0.0, 1.0),
    ("training", "precision"): _one_of("bf16", "fp32"),
    ("training", "grad_clip"): _between(0.0, 1e6),
    ("training", "seed"): _between(0, 2**32 - 1),
    ("training", "checkpoint_every"): _between(1, 10**9),
    ("training", "log_every"): _between(1, 10**9),
    ("training", "threads"): _between(0, 1024),
    ("sampler_defaults", "steps"): _between(1, 1000),
    ("sampler_defaults", "guidance"): _between(0.0, 100.0),
    ("sampler_defaults", "n"): _between(1, 10**6),
    ("sampler_defaults", "seed"): _between(0, 2**63 - 1),
    ("sampler_defaults", "batch_size"): _between(1, 65536),
    ("sampler_defaults", "label"): _between(0, 100_000),
    ("training_state", "step"): _between(0, 10**9),
    ("training_state", "seconds"): _between(0.0, 1e10),
    ("artifact", "size_bytes"): _between(0, 1 << 50),
    ("artifact", "num_classes"): _between(0, 100_000),
    ("artifact", "backend"): ((lambda v: bool(_IDENT.fullmatch(v))), "a short name such as 'openvino'"),
    ("artifact", "precision"): ((lambda v: bool(_IDENT.fullmatch(v))), "a short name such as 'fp32'"),
}
LAZY_RANGES = {("sampler_defaults", "sampler"): _sampler_name}


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """The `training_state` a trained model dir records (what train.fit wrote last)."""

    step: int = 0
    seconds: float = 0.0


def _sections() -> dict[str, type]:
    """config.json sections and the dataclass each one describes (imported late: train imports checkpoint)."""
    from .denoiser import Preconditioning
    from .generate import Request
    from .train import TrainConfig
    from .unet import UNetConfig

    return {"unet": UNetConfig, "precond": Preconditioning, "training": TrainConfig, "sampler_defaults": Request,
            "training_state": TrainingState}


# ---------------------------------------------------------------------------------------------------- reading JSON


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


# ------------------------------------------------------------------------------------------------- type checking


@functools.cache
def hints(cls: type) -> dict[str, object]:
    """{field name: resolved type hint} of a dataclass."""
    resolved = typing.get_type_hints(cls)
    return {f.name: resolved[f.name] for f in dataclasses.fields(cls)}


def required(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def type_problem(value, hint, key: str) -> str | None:
    """Why `value` (parsed JSON) does not fit the type hint `hint`, or None if it does."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        return None
    if origin is typing.Literal:
        return None if value in args else f"{key} = {_show(value)}; expected one of {list(args)}"
    if origin in (typing.Union, types.UnionType):
        fits = [type_problem(value, a, key) is None for a in args]
        return None if any(fits) else f"{key} = {_show(value)}; expected {' or '.join(_describe(a) for a in args)}"
    if hint is type(None):
        return None if value is None else f"{key} = {_show(value)}; expected null"
    if hint is bool:
        return None if isinstance(value, bool) else f"{key} = {_show(value)}; expected true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else \
            f"{key} = {_show(value)}; expected an integer"
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else f"{key} = {_show(value)}; expected a finite number"
    if hint in (str, Path):
        return None if isinstance(value, str) and len(value) <= MAX_STR else \
            f"{key} = {_show(value)}; expected a string of at most {MAX_STR} characters"
    if hint is dict or origin is dict:
        return _dict_problem(value, args, key)
    if hint in (list, tuple) or origin in (list, tuple):
        return _sequence_problem(value, hint, args, key)
    if dataclasses.is_dataclass(hint):
        return None if isinstance(value, dict) else f"{key} = {_show(value)}; expected an object"
    return None if isinstance(value, str | int | float | bool | list | dict) or value is None else \
        f"{key} = {_show(value)}; expected {_name(hint)}"


def _dict_problem(value, args, key: str) -> str | None:
    if not isinstance(value, dict):
        return f"{key} = {_show(value)}; expected an object"
    if args:
        for k, v in value.items():
            problem = type_problem(k, args[0], f"{key} key") or type_problem(v, args[1], f"{key}[{k!r}]")
            if problem:
                return problem
    return None


def _sequence_problem(value, hint, args, key: str) -> str | None:
    if not isinstance(value, list):
        return f"{key} = {_show(value)}; expected a list ({_name(hint)})"
    if not args:
        return None
    if len(args) == 2 and args[1] is Ellipsis:
        items = [(e, args[0]) for e in value]
    elif typing.get_origin(hint) is tuple:
        if len(value) != len(args):
            return f"{key} has {len(value)} entries; expected {len(args)} ({_name(hint)})"
        items = list(zip(value, args, strict=True))
    else:
        items = [(e, args[0]) for e in value]
    for i, (e, h) in enumerate(items):
        problem = type_problem(e, h, f"{key}[{i}]")
        if problem:
            return problem
    return None


def _show(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(hint) -> str:
    return {int: "an integer", float: "a finite number", str: "a string", bool: "true or false",
            type(None): "null"}.get(hint, _name(hint))


def _name(hint) -> str:
    if typing.get_origin(hint) is None and hasattr(hint, "__name__"):
        return hint.__name__
    return str(hint).replace("typing.", "")


# ---------------------------------------------------------------------------------------------------- sections


def section_problems(section: str, cls_or_fields, d) -> list[str]:
    """Problems of dict `d` as the JSON form of a dataclass (or {field: hint}): unknown keys, types, ranges."""
    fields = dict(cls_or_fields) if isinstance(cls_or_fields, dict) else hints(cls_or_fields)
    if section == "precond":
        fields["kind"] = str  # Preconditioning.to_dict() names its kind
    if not isinstance(d, dict):
        return [f"{section} = {_show(d)}; expected an object with keys {sorted(fields)}"]
    unknown = sorted(set(d) - set(fields))
    problems = [f"{section} has unknown keys {_show(unknown)}; expected a subset of {sorted(fields)}"] \
        if unknown else []
    for key, value in d.items():
        hint = fields.get(key)
        if hint is None:
            continue
        problem = type_problem(value, hint, f"{section}.{key}")
        problem = problem or _range_problem(section, key, value, hint)
        if problem:
            problems.append(problem)
    return problems


def _range_problem(section: str, key: str, value, hint) -> str | None:
    check = RANGES.get((section, key)) or (LAZY_RANGES[(section, key)]() if (section, key) in LAZY_RANGES else None)
    if check is None and hint is int:
        check = _between(-DEFAULT_INT, DEFAULT_INT)
    if check is None or value is None:
        return None
    ok, text = check
    return None if ok(value) else f"{section}.{key} = {_show(value)}; expected {text}"


def check_fields(section: str, obj) -> None:
    """Raise InputError if a dataclass instance breaks the types or RANGES of `section` (for __post_init__).

    This lets constructors share the config.json rules, e.g. `TrainConfig.__post_init__` calling
    `schema.check_fields("training", self)` and `generate.Request` calling it with "sampler_defaults".
    """
    d = json.loads(json.dumps(dataclasses.asdict(obj), default=str))  # tuples → lists, as config.json holds them
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            d[f.name] = value  # json.dumps wrote NaN as NaN; keep the float so the check names it
    problems = section_problems(section, type(obj), d)
    if problems:
        raise InputError("; ".join(problems[:4]))


# ------------------------------------------------------------------------------------------------ model config


def check_model_config(meta, where: str) -> dict:
    """Validate a model directory's parsed config.json (format, sections, types, ranges, size); return it.

    Sections ("unet", "precond", "training", "sampler_defaults", "training_state") accept only their dataclass's
    fields. Other top-level keys are free-form metadata (names, provenance) and only need to be plain JSON.
    """
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{where} is not an edgediff model config (expected format {MODEL_FORMAT!r})")
    version = meta.get("format_version")
    if version != MODEL_FORMAT_VERSION or isinstance(version, bool):
        raise ModelFileError(f"{where} has format_version {_show(version)}; this edgediff reads version "
                             f"{MODEL_FORMAT_VERSION}")
    if "unet" not in meta:
        raise ModelFileError(f"{where} has no 'unet' section; expected the network's UNetConfig fields")
    problems = [p for section, cls in _sections().items() if section in meta
                for p in section_problems(section, cls, meta[section])]
    for key in ("name", "data"):
        if key in meta and not isinstance(meta[key], str):
            problems.append(f"{key} = {_show(meta[key])}; expected a string")
    if not problems:
        problems = _unet_problems(meta["unet"])
    if problems:
        raise ModelFileError(f"{where} has an invalid model description: " + "; ".join(problems[:4]))
    return meta


def _unet_problems(unet: dict) -> list[str]:
    from .unet import UNetConfig

    channels = unet.get("channels", UNetConfig.channels)
    blocks = unet.get("blocks_per_level", UNetConfig.blocks_per_level)
    if not 1 <= len(channels) <= 8:
        return [f"unet.channels has {len(channels)} levels; expected 1 to 8"]
    estimate = 20 * 9 * blocks * sum(c * c for c in channels)  # ~2 convs down + 3 up per block, 3×3 kernels
    if estimate > MAX_PARAMS:
        return [f"unet would have about {estimate:.2g} parameters; expected at most {MAX_PARAMS:.0e}"]
    try:
        UNetConfig.from_dict(unet)
    except (TypeError, ValueError) as e:
        return [str(e)]
    return []


# ----------------------------------------------------------------------------------------------- artifact.json


def check_artifact(meta, where: str) -> dict:
    """Validate a parsed artifact.json: schema_version, known fields and types, spec, hashes, safe file names."""
    from .artifact import DTYPES, Artifact

    lo, hi = ARTIFACT_SCHEMA_VERSIONS
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or not lo <= version <= hi:
        raise ModelFileError(f"{where} has schema_version {_show(version)}; this edgediff reads "
                             f"schema_version {lo} to {hi} (re-run `edgediff convert` with this version)")
    fields = {k: v for k, v in hints(Artifact).items() if k != "path"}
    missing = sorted((required(Artifact) - {"path"}) - set(meta))
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
    if set(spec) not in ({"x", "t"}, {"x", "t", "label"}, {"x", "t", "label", "w"}):
        problems.append(f"spec names inputs {sorted(spec)}; expected x, t[, label[, w]]")
    for name, (shape, dtype) in spec.items():
        if not 1 <= len(shape) <= 8 or any(not 1 <= d <= 65536 for d in shape) or dtype not in dtypes:
            problems.append(f"spec.{name} = {_show([shape, dtype])}; expected 1-8 dims in 1..65536 and a "
                            f"dtype in {list(dtypes)}")
    if not problems and (len(spec["x"][0]) != 4 or spec["t"][0] != spec["x"][0][:1]):
        problems.append(f"spec x must be [B,C,H,W] and t [B]; got {_show(spec)}")
    if meta.get("precond") is not None:
        from .denoiser import Preconditioning

        problems += section_problems("precond", Preconditioning, meta["precond"])
        if not problems:
            try:
                Preconditioning.from_dict(meta["precond"])
            except (TypeError, ValueError) as e:  # e.g. sigma_min >= sigma_max
                problems.append(str(e))
    if meta.get("sampler_defaults") is not None:
        from .generate import Request

        problems += section_problems("sampler_defaults", Request, meta["sampler_defaults"])
    return problems


def safe_name(name) -> bool:
    """A canonical relative POSIX path that stays inside its directory (no '..', '.', '//', '\\', NUL, absolute)."""
    if not isinstance(name, str) or not name or len(name) > 1024 or "\\" in name or "\x00" in name:
        return False
    p = PurePosixPath(name)
    return str(p) == name and not p.is_absolute() and all(part not in (".", "..") for part in p.parts)
