"""Model directories (config.json + weights.safetensors), training checkpoints and atomic file writes.

A model directory is what `mobile_models/<name>/` holds and what `edgediff train` writes. Weights are only ever
read from safetensors and configs only from JSON checked against `schema`, so loading a model never executes code
from a file. Tensor files edgediff writes carry a sha256 of their tensors in the safetensors metadata, so a
truncated or bit-flipped file is refused instead of loaded with wrong values. Every write goes to a temp file
beside the target (named after the writing process) and is renamed into place; temp files of processes that died
mid-write are removed by the next write of the same target.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as serialize

from edgediff.errors import ModelFileError
from edgediff.format import diffusers_dir
from edgediff.format.configs import UNetConfig
from edgediff.format.files import atomic_path, write_text
from edgediff.format.model_dir import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    read_config,
    resolve,
)
from edgediff.format.precond import Preconditioning
from edgediff.models.unet import UNet

CHECKSUM_KEY = "edgediff.sha256"  # safetensors metadata: sha256 over the tensors' names, dtypes, shapes, bytes
HALF_DTYPES = (torch.float16, torch.bfloat16)  # storage dtypes of float32 weights that load by upcasting


@dataclass(frozen=True)
class ModelDir:
    """A loaded model directory: the network plus everything needed to sample from it."""

    path: Path
    net: torch.nn.Module  # UNet, or models.diffusers.DiffusersUNet
    unet: UNetConfig  # or models.diffusers.DiffusersConfig (the fields both have: resolution, in/out channels...)
    precond: Preconditioning
    meta: dict
    weights_file: Path | None = None  # where the weights are, when not path/weights.safetensors (diffusers)

    def __post_init__(self):
        if self.weights_file is None:
            object.__setattr__(self, "weights_file", self.path / WEIGHTS_FILE)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the class labels 0..num_classes-1 (empty when the model does not know them)."""
        names = self.meta.get("class_names") or ()
        return tuple(str(n) for n in names) if len(names) == self.unet.num_classes else ()

    @property
    def is_diffusers(self) -> bool:
        return self.precond.kind == "vp"

    @property
    def sampler_defaults(self) -> dict:
        return dict(self.meta.get("sampler_defaults", {"sampler": "dpmpp_2m", "steps": 10, "guidance": 1.0}))


def load(model: str | os.PathLike, *, weights: bool = True) -> ModelDir:
    """Load a model directory ('default', a shipped name, or a path) into an eval-mode UNet."""
    path = resolve(model)
    if diffusers_dir.is_diffusers(path):
        from edgediff.models import diffusers

        root, net, config, precond, meta, weights_file = diffusers.load_folder(path, weights=weights)
        return ModelDir(root, net, config, precond, meta, weights_file=weights_file)
    meta = read_config(path)
    cfg = UNetConfig.from_dict(meta["unet"])
    net = UNet(cfg)
    if weights:
        load_weights(net, path / WEIGHTS_FILE)
    return ModelDir(path, net.eval(), cfg, Preconditioning.from_dict(meta.get("precond", {})), meta)


def load_weights(net: torch.nn.Module, file: Path, *, strict: bool = True) -> None:
    """Load a safetensors state dict into `net`: names, shapes and dtypes must match; values must be finite."""
    file = Path(file)
    if not file.is_file():
        raise ModelFileError(f"{file} does not exist: this model has no trained weights "
                             f"(train it with `edgediff train --config {file.parent / CONFIG_FILE}`)")
    state = read_tensors(file)
    check_state(net.state_dict(), state, file, strict=strict)
    net.load_state_dict(state, strict=strict)


def check_state(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], file: Path, *,
                strict: bool = True) -> None:
    """Raise ModelFileError unless `state` (read from `file`) fits the state dict `own` and is finite."""
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    both = sorted(set(own) & set(state))
    wrong = [k for k in both if own[k].shape != state[k].shape]
    dtypes = [f"{k} ({state[k].dtype}, expected {own[k].dtype})" for k in both
              if own[k].dtype != state[k].dtype and not _widens(state[k].dtype, own[k].dtype)]
    if (missing or extra) and strict or wrong or dtypes:
        raise ModelFileError(f"{file} does not match the config: missing {missing[:3]}, unexpected {extra[:3]}, "
                             f"wrong shape {wrong[:3]}, wrong dtype {dtypes[:3]}")
    bad = [k for k in both if state[k].is_floating_point() and not torch.isfinite(state[k]).all()]
    if bad:
        raise ModelFileError(f"{file} holds NaN or Inf in {bad[:3]}: the weights are corrupt or training diverged; "
                             f"expected finite values")


def _widens(stored: torch.dtype, expected: torch.dtype) -> bool:
    """Half-precision storage of float32 weights (a file half the size) loads by upcasting."""
    return expected == torch.float32 and stored in HALF_DTYPES


def read_tensors(file: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file (never a pickle); corruption, truncation or a checksum mismatch → ModelFileError."""
    file = Path(file)
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise ModelFileError(f"{file} is not a valid safetensors file ({_short(e)})") from None
    want = meta.get(CHECKSUM_KEY)
    if want is not None and want != tensors_sha256(tensors):
        raise ModelFileError(f"{file} does not match the sha256 stored in it: the file is corrupt or was modified")
    return tensors


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over each tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        v = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{v.dtype}:{tuple(v.shape)};".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


def save(path: Path, net: UNet, meta: dict, *, dtype: torch.dtype | None = None) -> Path:
    """Write config.json + weights.safetensors into `path`, each file atomically; `dtype` float16/bfloat16 stores
    the float weights at half the size (`load` upcasts them to float32). None: the config's own "weights_dtype"
    ("float16", "bfloat16"; a shipped model's size budget), else float32."""
    if dtype is None:
        name = meta.get("weights_dtype", "float32")
        dtype = getattr(torch, name, None) if isinstance(name, str) else None
        if dtype not in (torch.float32, *HALF_DTYPES):
            raise ValueError(f"weights_dtype {name!r}; expected float32, float16 or bfloat16")
    if dtype not in (torch.float32, *HALF_DTYPES):
        raise ValueError(f"weights dtype {dtype} is not supported; expected float32, float16 or bfloat16")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    section = getattr(net.config, "SECTION", "unet")  # an autoencoder's config goes under "autoencoder"
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta, section: net.config.to_dict()}
    state = {k: (v.to(dtype) if v.dtype == torch.float32 else v).detach().contiguous().cpu()
             for k, v in net.state_dict().items()}
    write_tensors(path / WEIGHTS_FILE, state)
    write_text(path / CONFIG_FILE, json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return path


def write_tensors(file: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically, with the tensors' sha256 in its metadata (checked by read_tensors)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {**(metadata or {}), CHECKSUM_KEY: tensors_sha256(tensors)}
    with atomic_path(file) as tmp:
        tmp.write_bytes(serialize(tensors, metadata=metadata))

