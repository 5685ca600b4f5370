"""Self-describing, hash-checked artifact directories: a model file plus artifact.json (design §3).

Every backend's `convert` builds into a temp dir beside `out_dir` (`staging`), runs its parity gate there and only
then `commit`s: the temp dir is renamed into place, so a failed gate or a crash never leaves a half-written artifact.
`read` validates artifact.json against `artifact_schema.check_artifact` (schema_version range, known fields and
types, safe file names) and every file's sha256 before any runtime touches the model; runtimes load the model
file inside `native_errors`, so whatever a runtime raises on a bad file becomes a ModelFileError naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgediff.errors import EdgediffError, InputError, ModelFileError
from edgediff.format import artifact_schema, jsonfile
from edgediff.format.files import file_sha256
from edgediff.format.inputs import COMPONENT_INPUTS, DENOISER_INPUTS, InputSpec

SCHEMA_VERSION = artifact_schema.ARTIFACT_SCHEMA_VERSIONS[1]  # the version this edgediff writes
SIDECARS = ("calibration.npz",)  # shipped and hash-checked with the artifact, not part of the deployed size
safe_name = artifact_schema.safe_name
DTYPES = artifact_schema.DTYPES
ARTIFACT_FILE = "artifact.json"


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
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


























def list_files(root: Path) -> list[str]:
    """Every file or link under `root` except artifact.json, as sorted POSIX paths relative to it."""
    names = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()]
    return sorted(n for n in names if n != ARTIFACT_FILE)




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
    return artifact_schema.check_artifact(jsonfile.read_json(file), str(file), Artifact)


def _from_json(path: Path, meta: dict) -> Artifact:
    """Build an Artifact from JSON that `artifact_schema.check_artifact` accepted; the model file must be hashed."""
    if not _holds(meta["sha256"], meta["model_file"]):
        raise ModelFileError(f"{path / ARTIFACT_FILE} names model file {meta['model_file']!r}, which its sha256 "
                             f"table does not list")
    order = next(n for n in (*DENOISER_INPUTS, *COMPONENT_INPUTS) if set(n) == set(meta["spec"]))
    spec = {k: (tuple(meta["spec"][k][0]), meta["spec"][k][1]) for k in order}
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


def model_name(art: Artifact) -> str | None:
    """The name of the model an artifact was converted from (a shipped name, a folder's name, 'diffusers')."""
    model = art.source.get("model")
    if isinstance(model, dict):
        return model.get("name") or model.get("path") or "diffusers"
    return None if model is None else Path(str(model)).name
