"""Schemas of the JSON files edgediff reads: a model's config.json and an artifact's artifact.json.

Known keys and their types come from the frozen dataclasses themselves (`dataclasses.fields` + type hints), so a
field added to `UNetConfig`, `TrainConfig`, `Preconditioning`, `configs.Request` or `Artifact` is accepted (and
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
from pathlib import Path

from edgediff.errors import InputError

MAX_STR = 4096
DEFAULT_INT = 1 << 20  # range of an int field that RANGES does not mention (new fields)
# The samplers an artifact's sampler_defaults may name: the host-side sampling contract an app implements
# (edgediff.sampling.samplers.SAMPLERS holds one function per name; a test keeps the two equal).
SAMPLER_NAMES = ("euler", "heun", "dpmpp_2m", "consistency", "lcm", "tcd", "euler_ancestral")
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
    ("precond", "kind"): _one_of("edm", "consistency", "vp"),
    ("training", "steps"): _between(1, 10**9),
    ("training", "batch_size"): _between(1, 65536),
    ("training", "lr"): _between(0.0, 10.0, lo_open=True),
    ("training", "weight_decay"): _between(0.0, 10.0),
    ("training", "warmup_steps"): _between(0, 10**9),
    ("training", "decay_steps"): _between(0, 10**9),
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
    ("sampler_defaults", "sampler"): _one_of(*SAMPLER_NAMES),
    ("sampler_defaults", "steps"): _between(1, 1000),
    ("sampler_defaults", "guidance"): _between(0.0, 100.0),
    ("sampler_defaults", "gamma"): _between(0.0, 1.0),
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






# ---------------------------------------------------------------------------------------------------- reading JSON








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
    check = RANGES.get((section, key))
    if check is None and hint is int:
        check = _between(-DEFAULT_INT, DEFAULT_INT)
    if check is None or value is None:
        return None
    ok, text = check
    return None if ok(value) else f"{section}.{key} = {_show(value)}; expected {text}"


def check_fields(section: str, obj) -> None:
    """Raise InputError if a dataclass instance breaks the types or RANGES of `section` (for __post_init__).

    This lets constructors share the config.json rules, e.g. `TrainConfig.__post_init__` calling
    `schema.check_fields("training", self)` and `configs.Request` calling it with "sampler_defaults".
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






# ----------------------------------------------------------------------------------------------- artifact.json






