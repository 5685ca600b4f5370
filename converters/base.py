"""The backend contract: what every backend declares and does, and the registry everything else iterates over.

A backend is one module under `converters/` holding `BACKEND = Backend(...)` plus one line in `BUILTIN`; a
separate package adds one through the `edgediff.backends` entry point (`name = "module:BACKEND"`), and a script
through `register(...)` at run time. `edgediff bench`, `info`, `devices`, `pipeline`, `compress-report` and the CLI's
choices read the registry; none of them names a backend. Heavy runtimes import lazily inside the module's own
functions, so reading the registry imports no runtime.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Protocol, runtime_checkable

from edgediff.errors import EdgediffError, InputError

# name -> module holding its BACKEND; the one line a new built-in backend adds
BUILTIN = {"eager": "edgediff.converters.eager", "executorch": "edgediff.converters.executorch",
           "openvino": "edgediff.converters.openvino", "coreml": "edgediff.converters.coreml",
           "litert": "edgediff.converters.litert"}
ENTRY_POINTS = "edgediff.backends"  # installed plugins: name = "module:BACKEND"
_REGISTERED: dict[str, Backend] = {}  # backends added at run time with register()


@runtime_checkable
class Backend(Protocol):
    """The contract. `convert(net, spec, out_dir, *, precision, calibration, precond, sampler_defaults, source,
    **convert_options) -> Artifact`; `load(artifact_or_dir, *, device=None, threads=None, **load_options) -> Runner`
    (for `eager`, a model directory instead of an artifact); `devices()` lists what it can run on here and
    `unavailable()` says why its artifacts cannot run on this machine (None when they can)."""

    name: str
    precisions: tuple[str, ...]  # what convert() builds; () for the eager reference, which converts nothing
    calibrated: tuple[str, ...]  # precisions whose convert() needs calibration inputs
    label_dtype: str  # dtype of the class-label input in its artifacts
    convert_options: tuple[str, ...]  # the backend's own convert() keywords
    load_options: tuple[str, ...]  # the backend's own load() keywords beyond device and threads
    default_device: str  # what load(device=None) runs on
    takes_device: bool  # whether load(device=...) chooses among several (an OpenVINO device, a Core ML unit)
    requires: tuple[str, ...]  # modules that must be importable for it to work (checked without importing them)
    extra: str | None  # the pip extra that installs them: pip install "edgediff[<extra>]"
    pipeline_precisions: tuple[str, ...]  # what `edgediff pipeline` builds for it by default
    compressed: tuple[str, ...]  # what `edgediff compress-report` compares against its fp32
    app_hint: str  # how an app loads its model file ("{file}" stands for the file's path), for pipeline READMEs

    def devices(self) -> list[str]: ...
    def unavailable(self) -> str | None: ...
    def convert(self, net, spec, out_dir, **kw): ...
    def load(self, artifact_or_dir, *, device=None, threads=None, **options): ...


def runs_everywhere() -> str | None:
    return None


@dataclass(frozen=True, kw_only=True)
class ModuleBackend:
    """A Backend made of a module's functions: what each built-in backend module declares as BACKEND."""

    name: str
    precisions: tuple[str, ...]
    calibrated: tuple[str, ...] = ()
    label_dtype: str = "int32"
    convert_options: tuple[str, ...] = ()
    load_options: tuple[str, ...] = ()
    default_device: str = "CPU"
    takes_device: bool = False
    requires: tuple[str, ...] = ()
    extra: str | None = None
    pipeline_precisions: tuple[str, ...] = ()
    compressed: tuple[str, ...] = ()
    app_hint: str = "load `{file}` with the backend's runtime; inputs in spec order, see below."
    devices: Callable[[], list[str]]
    convert_fn: Callable | None = None
    load_fn: Callable
    unavailable: Callable[[], str | None] = runs_everywhere

    def convert(self, net, spec, out_dir, **kw):
        if self.convert_fn is None:
            raise InputError(f"the {self.name} backend is the reference and converts nothing; expected one of "
                             f"{', '.join(convertible())}")
        fixed = {"precision", "calibration", "precond", "sampler_defaults", "source"}
        check_options(self, "convert", {k: v for k, v in kw.items() if k not in fixed})
        if kw.get("precision", "fp32") not in self.precisions:
            raise InputError(f"unknown {self.name} precision {kw.get('precision')!r}; expected one of "
                             f"{', '.join(self.precisions)}")
        return self.convert_fn(net, spec, out_dir, **kw)

    def load(self, artifact_or_dir, *, device=None, threads=None, **options):
        check_options(self, "load", options)
        if device is not None and not self.takes_device and device != self.default_device:
            raise InputError(f"{self.name} runs on the host {self.default_device} here; device {device!r} "
                             f"applies to {' and '.join(n for n in names() if get(n).takes_device)} only")
        if threads is not None and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
            raise InputError(f"threads must be an integer >= 1, got {threads!r}")
        return self.load_fn(artifact_or_dir, device=device, threads=threads, **options)


def check_options(backend, kind: str, options: dict) -> None:
    """A one-line InputError for options the backend does not declare, listing the ones it does."""
    allowed = backend.convert_options if kind == "convert" else backend.load_options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise InputError(f"unknown {backend.name} {kind} option(s) {', '.join(unknown)}; valid: {valid}")


def register(backend: Backend) -> Backend:
    """Add a backend at run time (a plugin, a test); it then appears wherever the built-in ones do."""
    if not isinstance(backend, Backend):
        raise InputError(f"{backend!r} does not implement the Backend protocol (edgediff.converters.base.Backend)")
    if backend.name in BUILTIN:
        raise InputError(f"backend {backend.name!r} is built in; register another name")
    _REGISTERED[backend.name] = backend
    return backend


def unregister(name: str) -> None:
    _REGISTERED.pop(name, None)


def _plugins() -> dict:
    """Installed packages' backends (entry points of group `edgediff.backends`), by name; built-in names win."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINTS) if ep.name not in BUILTIN}


def names() -> tuple[str, ...]:
    """Every backend's name: the built-in ones, installed plugins, then those registered at run time."""
    plugins = [n for n in _plugins() if n not in _REGISTERED]
    return (*BUILTIN, *plugins, *_REGISTERED)


def get(name: str) -> Backend:
    """The backend called `name`; importing its module does not yet import its runtime."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN:
        return importlib.import_module(BUILTIN[name]).BACKEND
    plugin = _plugins().get(name)
    if plugin is None:
        raise InputError(f"unknown backend {name!r}; expected one of {', '.join(names())}")
    try:
        backend = plugin.load()
    except Exception as e:  # noqa: BLE001 - a broken plugin is reported as one line, whatever it raised
        raise EdgediffError(f"backend plugin {name!r} ({plugin.value}) failed to load: {type(e).__name__}: {e}") \
            from None
    if not isinstance(backend, Backend):
        raise EdgediffError(f"backend plugin {name!r} ({plugin.value}) does not implement the Backend protocol")
    return backend


def installed(backend: Backend) -> bool:
    """Whether the modules the backend needs are importable (found without importing them)."""
    return all(importlib.util.find_spec(m.split(".")[0]) is not None for m in backend.requires)


def convertible() -> tuple[str, ...]:
    """The backends that build artifacts (all but the eager reference)."""
    return tuple(n for n in names() if get(n).precisions)


def not_measured(reason: str) -> str:
    """How an artifact records a parity gate that could not run on this machine."""
    return f"not measured ({reason})"


def available() -> dict[str, list[str] | str]:
    """What each backend can use on this machine, or why it cannot run here."""
    out: dict[str, list[str] | str] = {}
    for name in names():
        try:
            out[name] = get(name).devices()
        except EdgediffError as e:
            out[name] = f"unavailable: {e}"
    return out
