"""Self-describing, hash-checked artifact directories: a model file plus artifact.json (design §3).

Every backend's `convert` builds into a temp dir beside `out_dir` (`staging`), runs its parity gate there and only
then `commit`s: the temp dir is renamed into place, so a failed gate or a crash never leaves a half-written artifact.
`read` validates artifact.json against `schema.check_artifact` (schema_version range, known fields and types, safe
file names) and every file's sha256 before any runtime touches the model; runtimes load the model file inside
`native_errors`, so whatever a runtime raises on a bad file becomes a ModelFileError naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from . import schema
from .errors import EdgediffError, InputError, ModelFileError
from .inputs import check_guidance, check_runner_inputs

SCHEMA_VERSION = schema.ARTIFACT_SCHEMA_VERSIONS[1]  # the version this edgediff writes
SIDECARS = ("calibration.npz",)  # shipped and hash-checked with the artifact, not part of the deployed size
safe_name = schema.safe_name
ARTIFACT_FILE = "artifact.json"
InputSpec = dict[str, tuple[tuple[int, ...], str]]
DTYPES = ("float32", "float16", "int32", "int64")


@dataclass(frozen=True)
class Artifact:
    """A converted model on disk: what it expects, where it came from, how faithful it is."""

    path: Path
    backend: str
    precision: str
    spec: InputSpec
    precond: dict
    sampler_defaults: dict
    size_bytes: int
    sha256: dict[str, str]
    parity_db: float | None
    op_coverage: dict
    source: dict
    model_file: str
    num_classes: int = 0
    parity_maxabs: float | None = None
    options: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def model_path(self) -> Path:
        return self.path / self.model_file

    def to_json(self) -> dict:
        d = asdict(self)
        del d["path"]
        d["spec"] = {k: [list(shape), dtype] for k, (shape, dtype) in self.spec.items()}
        return d


@dataclass(frozen=True)
class Header:
    """The fields `convert` knows before building anything; `key` decides whether an artifact can be reused."""

    backend: str
    precision: str
    spec: InputSpec
    precond: dict
    sampler_defaults: dict
    source: dict
    num_classes: int = 0
    options: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        d = {"backend": self.backend, "precision": self.precision, "options": self.options,
             "spec": {k: [list(s), t] for k, (s, t) in self.spec.items()}, "precond": self.precond,
             "source": {k: v for k, v in self.source.items() if k not in ("git_sha", "key")}}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def make_spec(*, batch: int = 1, channels: int, resolution: int, num_classes: int,
              label_dtype: str = "int32", guidance_input: bool = False) -> InputSpec:
    """The static input spec of a (x, t[, label[, w]]) network; `w` = guidance scale of a guidance-embedding one."""
    spec: InputSpec = {"x": ((batch, channels, resolution, resolution), "float32"), "t": ((batch,), "float32")}
    if num_classes:
        spec["label"] = ((batch,), label_dtype)
    if guidance_input:
        if not num_classes:
            raise InputError("a guidance input needs a class-conditional model (guidance mixes label and null)")
        spec["w"] = ((batch,), "float32")
    return spec


def example_inputs(spec: InputSpec) -> tuple:
    """Zero-ish torch tensors matching `spec`, in its order, for capture (torch.export)."""
    import torch

    return tuple(torch.zeros(shape, dtype=getattr(torch, dtype)) for shape, dtype in spec.values())


class SpecRunner:
    """Base of the compiled-artifact Runners: inputs are checked against the static spec (shape, dtype, finite,
    label range) before `_run(inputs)` hands them, in spec order, to the native runtime."""

    spec: InputSpec
    num_classes: int

    @property
    def takes_guidance(self) -> bool:
        """True for guidance-embedding students: pass w instead of a second, unconditional call."""
        return "w" in self.spec

    def __call__(self, x: np.ndarray, t: np.ndarray, label: np.ndarray | None = None,
                 w: np.ndarray | None = None) -> np.ndarray:
        return self._run(prepare_inputs(self.spec, self.num_classes, x, t, label, w))

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


def prepare_inputs(spec: InputSpec, num_classes: int, x, t, label, w=None, *,
                   allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
    """Check runner inputs against the static spec; return them in spec order and dtypes (label None = null,
    w None = guidance 1)."""
    shape = spec["x"][0]
    x, t, label = check_runner_inputs(x, t, label, channels=shape[1], resolution=shape[2],
                                      num_classes=num_classes, batch=shape[0], allow_nonfinite=allow_nonfinite)
    if x.shape != tuple(shape):
        raise InputError(f"x has shape {x.shape}; expected {tuple(shape)}")
    if "label" not in spec:
        if label is not None:
            raise InputError("this artifact is unconditional: label must be None")
        return {"x": x, "t": t}
    if label is None:
        label = np.full(shape[0], num_classes)
    out = {"x": x, "t": t, "label": np.ascontiguousarray(label.astype(spec["label"][1]))}
    if "w" in spec:
        out["w"] = check_guidance(w, shape[0])
    elif w is not None:
        raise InputError("this artifact takes no guidance input w; guide it with two calls (classifier-free guidance)")
    return out


def weights_sha256(net) -> str:
    """sha256 over a module's class name and state_dict (names, dtypes, shapes, bytes)."""
    import torch

    h = hashlib.sha256(type(net).__qualname__.encode())
    for name, value in sorted(net.state_dict().items()):
        v = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{v.dtype}:{tuple(value.shape)}".encode())
        h.update(v.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def describe_source(net, source: dict | None, *, tools: tuple[str, ...]) -> dict:
    """Provenance: the caller's model description, a hash of the weights, tool versions, git sha."""
    out = dict(source or {})
    out["weights_sha256"] = weights_sha256(net)
    out["tools"] = {name: _version(name) for name in ("edgediff", "torch", "numpy", *tools)}
    sha = git_sha()
    if sha:
        out["git_sha"] = sha
    return out


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_sha() -> str | None:
    """The commit of the source checkout edgediff runs from, if it is one."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


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
    from .checkpoint import remove_stale_temps, temp_name  # torch-free at import time; checkpoint imports torch

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
    from .checkpoint import temp_name

    old = None
    if out_dir.exists():
        old = out_dir.parent / temp_name(out_dir.name, ".old")
        old.mkdir()
        os.replace(out_dir, old / "artifact")
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def list_files(root: Path) -> list[str]:
    """Every file or link under `root` except artifact.json, as sorted POSIX paths relative to it."""
    names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()]
    return sorted(n for n in names if n != ARTIFACT_FILE)


def file_sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read(path: os.PathLike) -> Artifact:
    """Read artifact.json, validate it, and verify every file's sha256 (ModelFileError naming the file)."""
    path = Path(path)
    art = _from_json(path, _read_json(path))
    unlisted = sorted(set(list_files(path)) - set(art.sha256))
    if unlisted:
        raise ModelFileError(f"{path} holds files artifact.json does not list: {unlisted[:3]}")
    root = path.resolve()
    for name, want in art.sha256.items():
        file = path / name
        if file.is_symlink() or not file.resolve().is_relative_to(root):
            raise ModelFileError(f"{file} is a link or lies outside {path}; expected plain files inside it")
        if not file.is_file():
            raise ModelFileError(f"{file} is missing; artifact.json lists it")
        if file_sha256(file) != want:
            raise ModelFileError(f"{file} does not match its sha256 in {ARTIFACT_FILE}: the file is corrupt "
                                 f"or was modified; re-run `edgediff convert`")
    return art


def open_artifact(artifact_or_dir, *, backend: str) -> Artifact:
    """Verify an artifact (or the dir holding one) for `backend` before loading it; re-hashes the files."""
    path = artifact_or_dir.path if isinstance(artifact_or_dir, Artifact) else Path(artifact_or_dir)
    art = read(path)
    if art.backend != backend:
        raise InputError(f"{path} is a {art.backend} artifact; load it with backend {art.backend!r}, "
                         f"not {backend!r}")
    return art


def _read_json(path: Path) -> dict:
    file = path / ARTIFACT_FILE
    if not file.is_file():
        raise ModelFileError(f"{file} is missing: {path} is not an edgediff artifact (run `edgediff convert`)")
    return schema.check_artifact(schema.read_json(file), str(file))


def _from_json(path: Path, meta: dict) -> Artifact:
    """Build an Artifact from JSON that `schema.check_artifact` accepted; the model file must be hashed."""
    if not _holds(meta["sha256"], meta["model_file"]):
        raise ModelFileError(f"{path / ARTIFACT_FILE} names model file {meta['model_file']!r}, which its sha256 "
                             f"table does not list")
    spec = {k: (tuple(meta["spec"][k][0]), meta["spec"][k][1]) for k in ("x", "t", "label", "w")
            if k in meta["spec"]}
    return Artifact(**{**meta, "path": path, "spec": spec})


@contextlib.contextmanager
def native_errors(file: os.PathLike, what: str = "the runtime"):
    """Turn anything a native runtime raises while loading or running `file` into a ModelFileError naming it.

    Use it around the runtime's own calls only (after the inputs were checked), e.g.
    `with artifact.native_errors(path, "OpenVINO"): compiled = core.compile_model(str(path), device, config)`.
    """
    try:
        yield
    except EdgediffError:
        raise
    except Exception as e:  # runtimes raise RuntimeError, ValueError, their own types ...
        text = " ".join(str(e).split())[:300] or type(e).__name__
        raise ModelFileError(f"{file} failed in {what} ({type(e).__name__}: {text}); the model file may be "
                             f"corrupt or from another runtime version: re-run `edgediff convert`") from None


def check_magic(file: os.PathLike, magic: bytes, *, offset: int = 0, what: str = "model file") -> None:
    """Refuse `file` unless it holds `magic` at `offset`: a cheap header check before a native parser sees it.

    ExecuTorch aborts the process (not an exception) on some files without its identifier, e.g. for .pte:
    `check_magic(path, b"ET12", offset=4, what="an ExecuTorch program")`.
    """
    try:
        with open(file, "rb") as f:
            f.seek(offset)
            head = f.read(len(magic))
    except OSError as e:
        raise ModelFileError(f"{file} cannot be read ({e.strerror or e})") from None
    if head != magic:
        raise ModelFileError(f"{file} is not {what}: expected {magic!r} at byte {offset}, found {head!r}")


def _holds(hashes: dict[str, str], model_file: str) -> bool:
    """Whether the hashed files include the model file (or, for a package dir such as .mlpackage, its files)."""
    return model_file in hashes or any(n.startswith(f"{model_file}/") for n in hashes)


def header_for(net, spec: InputSpec, *, backend: str, precision: str, precond, sampler_defaults: dict | None,
               source: dict | None, tools: tuple[str, ...], options: dict | None = None) -> Header:
    """The Header of a conversion: normalised spec/precond, class count and provenance of `net`."""
    _check_spec(spec)
    precond = precond.to_dict() if hasattr(precond, "to_dict") else dict(precond)
    config = getattr(net, "config", None)
    num_classes = int(getattr(config, "num_classes", (source or {}).get("num_classes", 0))) if "label" in spec else 0
    if "label" in spec and num_classes <= 0:
        raise InputError("spec has a label input but the network's class count is unknown; "
                         "pass source={'num_classes': N} (or a net with .config.num_classes)")
    src = describe_source(net, source, tools=tools)
    if config is not None and hasattr(config, "to_dict"):
        src.setdefault("config", config.to_dict())
    return Header(backend=backend, precision=precision, spec={k: (tuple(s), d) for k, (s, d) in spec.items()},
                  precond=precond, sampler_defaults=dict(sampler_defaults or {}), source=src,
                  num_classes=num_classes, options=dict(options or {}))


def _check_spec(spec: InputSpec) -> None:
    names = list(spec)
    if names not in (["x", "t"], ["x", "t", "label"], ["x", "t", "label", "w"]):
        raise InputError(f"spec must name inputs x, t[, label[, w]] in that order; got {names}")
    shape = tuple(spec["x"][0])
    if len(shape) != 4 or shape[2] != shape[3] or spec["t"][0] != (shape[0],) or spec["x"][1] != "float32":
        raise InputError(f"spec x must be float32 [B,C,R,R] and t [B]; got {spec}")
    if "label" in spec and spec["label"][1] not in ("int32", "int64"):
        raise InputError(f"spec label dtype must be int32 or int64; got {spec['label'][1]}")


def capture(net, spec: InputSpec):
    """torch.export the network (eval mode) with static shapes from `spec`."""
    import torch

    with torch.no_grad():
        return torch.export.export(net.eval(), example_inputs(spec))
