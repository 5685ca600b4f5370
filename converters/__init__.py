"""Backends behind one Runner interface, installed as `edgediff.converters`; heavy runtimes import lazily.

`base` holds the Backend contract and the registry; each backend is one module (`eager` — the reference —,
`executorch`, `openvino`, `coreml`) declaring `BACKEND`. `convert.convert_model` turns a model directory into an
artifact on any of them; `build` and `parity` are the steps every backend's convert shares.
"""

from edgediff.converters.base import Backend, available, convertible, get, names, register

__all__ = ["Backend", "available", "convertible", "get", "names", "register"]
