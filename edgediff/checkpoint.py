"""Model directories (config.json + weights.safetensors) and atomic file writes.

A model directory is what `mobile_models/<name>/` holds and what `edgediff train` writes. Weights are only ever
read from safetensors and configs only from JSON, so loading a model never executes code from a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as serialize

from .denoiser import Preconditioning
from .errors import ModelFileError
from .unet import UNet, UNetConfig

FORMAT = "edgediff.model"
FORMAT_VERSION = 1
DEFAULT_MODEL = "mnist-tiny"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"


@dataclass(frozen=True)
class ModelDir:
    """A loaded model directory: the network plus everything needed to sample from it."""

    path: Path
    net: UNet
    unet: UNetConfig
    precond: Preconditioning
    meta: dict

    @property
    def sampler_defaults(self) -> dict:
        return dict(self.meta.get("sampler_defaults", {"sampler": "dpmpp_2m", "steps": 10, "guidance": 1.0}))


def shipped_models_dir() -> Path:
    return Path(str(resources.files("edgediff.mobile_models")))


def resolve(model: str | os.PathLike) -> Path:
    """'default' or a shipped model's name → its folder in the package; anything else is a path."""
    name = str(model)
    if name == "default":
        name = DEFAULT_MODEL
    shipped = shipped_models_dir() / name
    if "/" not in name and _is_model_dir(shipped):
        return shipped
    path = Path(model)
    if not (path / CONFIG_FILE).is_file():
        raise ModelFileError(f"model {name!r} not found: expected 'default', a shipped model name "
                             f"({', '.join(list_shipped())}) or a directory containing {CONFIG_FILE}")
    return path


def list_shipped() -> list[str]:
    return sorted(p.name for p in shipped_models_dir().iterdir() if _is_model_dir(p))


def _is_model_dir(path: Path) -> bool:
    try:
        return json.loads((path / CONFIG_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_config(path: Path) -> dict:
    """Read and check a model directory's config.json (JSON only, known format and version)."""
    try:
        meta = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path / CONFIG_FILE} is not readable JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path / CONFIG_FILE} is not an edgediff model config (expected format {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path / CONFIG_FILE} has format_version {meta.get('format_version')!r}; "
                             f"this edgediff reads version {FORMAT_VERSION}")
    try:
        UNetConfig.from_dict(meta["unet"])
        Preconditioning.from_dict(meta.get("precond", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path / CONFIG_FILE} has an invalid model description: {e}") from None
    return meta


def load(model: str | os.PathLike, *, weights: bool = True) -> ModelDir:
    """Load a model directory ('default', a shipped name, or a path) into an eval-mode UNet."""
    path = resolve(model)
    meta = read_config(path)
    cfg = UNetConfig.from_dict(meta["unet"])
    net = UNet(cfg)
    if weights:
        load_weights(net, path / WEIGHTS_FILE)
    return ModelDir(path, net.eval(), cfg, Preconditioning.from_dict(meta.get("precond", {})), meta)


def load_weights(net: torch.nn.Module, file: Path, *, strict: bool = True) -> None:
    if not file.is_file():
        raise ModelFileError(f"{file} does not exist: this model has no trained weights "
                             f"(train it with `edgediff train --config {file.parent / CONFIG_FILE}`)")
    state = read_tensors(file)
    own = net.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if (missing or extra) and strict or wrong:
        raise ModelFileError(f"{file} does not match the config: missing {missing[:3]}, unexpected {extra[:3]}, "
                             f"wrong shape {wrong[:3]}")
    net.load_state_dict(state, strict=strict)


def read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning truncation or corruption into a ModelFileError."""
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{file} is not a valid safetensors file ({e})") from None


def save(path: Path, net: UNet, meta: dict) -> Path:
    """Write config.json + weights.safetensors into `path`, each file atomically."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta, "unet": net.config.to_dict()}
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    write_tensors(path / WEIGHTS_FILE, state)
    write_text(path / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    return path


def write_tensors(file: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    with atomic_path(file) as tmp:
        tmp.write_bytes(serialize(tensors, metadata=metadata))


def write_text(file: Path, text: str) -> None:
    with atomic_path(file) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_path(file: Path):
    """Yield a temp path beside `file`; rename it onto `file` only if the block finishes."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
