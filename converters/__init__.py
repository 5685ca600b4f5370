"""Backends behind one Runner interface, installed as `edgediff.converters`; heavy runtimes import lazily.

Each backend module offers `load(...) -> Runner` and (except `eager`, the reference) `convert(...) -> Artifact`.
"""

from __future__ import annotations

import importlib

from edgediff.errors import InputError

BACKENDS = ("eager", "executorch", "openvino", "coreml")


def get(name: str):
    """The backend module called `name`; importing it does not yet import its runtime."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"{__name__}.{name}")
