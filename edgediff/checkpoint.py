"""Model directories (config.json + weights.safetensors), training checkpoints and atomic file writes.

A model directory is what `mobile_models/<name>/` holds and what `edgediff train` writes. Weights are only ever
read from safetensors and configs only from JSON checked against `schema`, so loading a model never executes code
from a file. Tensor files edgediff writes carry a sha256 of their tensors in the safetensors metadata, so a
truncated or bit-flipped file is refused instead of loaded with wrong values. Every write goes to a temp file
beside the target (named after the writing process) and is renamed into place; temp files of processes that died
mid-write are removed by the next write of the same target.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as serialize

from . import schema
from .denoiser import Preconditioning
from .errors import ModelFileError
from .unet import UNet, UNetConfig

FORMAT = schema.MODEL_FORMAT
FORMAT_VERSION = schema.MODEL_FORMAT_VERSION
DEFAULT_MODEL = "mnist-tiny"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"
CHECKSUM_KEY = "edgediff.sha256"  # safetensors metadata: sha256 over the tensors' names, dtypes, shapes, bytes
HALF_DTYPES = (torch.float16, torch.bfloat16)  # storage dtypes of float32 weights that load by upcasting
CKPT_NAME = re.compile(r"ckpt-(\d{8})")
LATEST = "latest"


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
    """Read a model directory's config.json: JSON only, validated by `schema.check_model_config`."""
    file = Path(path) / CONFIG_FILE
    meta = schema.check_model_config(schema.read_json(file), str(file))
    try:
        Preconditioning.from_dict(meta.get("precond", {}))
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{file} has an invalid model description: {e}") from None
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


def save(path: Path, net: UNet, meta: dict, *, dtype: torch.dtype = torch.float32) -> Path:
    """Write config.json + weights.safetensors into `path`, each file atomically; `dtype` float16/bfloat16 stores
    the float weights at half the size (`load` upcasts them to float32)."""
    if dtype not in (torch.float32, *HALF_DTYPES):
        raise ValueError(f"weights dtype {dtype} is not supported; expected float32, float16 or bfloat16")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta, "unet": net.config.to_dict()}
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


def write_text(file: Path, text: str) -> None:
    with atomic_path(file) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_path(file: Path):
    """Yield a temp path beside `file`; rename it onto `file` only if the block finishes.

    The temp file is `.<name>.<pid>-<random>.tmp`: a process killed mid-write leaves it behind, and the next
    `atomic_path` of the same target removes it once that pid no longer runs.
    """
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(file.parent, file.name)
    tmp = file.parent / temp_name(file.name, ".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~umask))
    try:
        yield tmp
        os.replace(tmp, file)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def temp_name(name: str, suffix: str) -> str:
    """A hidden temp name beside `name` that records the writing process: `.<name>.<pid>-<random><suffix>`."""
    return f".{name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def remove_stale_temps(directory: Path, name: str | None = None) -> list[Path]:
    """Delete temp files/dirs (`temp_name`) of `name` (None: any) whose writing process is gone; return them."""
    pattern = re.compile(rf"\.({re.escape(name) if name else '.+'})\.(\d+)-[0-9a-f]{{8}}\.(tmp|old)")
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m and not _alive(int(m.group(2))):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


# ---------------------------------------------------------------------------------------- training checkpoints


def latest_checkpoint(out: Path) -> Path | None:
    """The complete checkpoint dir `out/latest` names (`ckpt-<8 digits>` inside `out`), or None without one."""
    out = Path(out)
    pointer = out / LATEST
    if not pointer.exists() and not pointer.is_symlink():
        return None
    try:
        name = pointer.read_bytes()[:64].decode("ascii").strip() if pointer.is_file() else ""
    except (OSError, UnicodeDecodeError):
        name = ""
    d = out / name
    if not CKPT_NAME.fullmatch(name):
        raise ModelFileError(f"{pointer} names {name!r}; expected a checkpoint dir ckpt-NNNNNNNN in {out} "
                             f"(delete {pointer} or pass --restart to start over)")
    if d.is_symlink() or not (d / "state.json").is_file():
        raise ModelFileError(f"{pointer} points at {name}, which is missing or incomplete; expected a complete "
                             f"checkpoint (delete {out} or pass --restart to start over)")
    return d


def load_training_state(out: Path, net: torch.nn.Module, ema: torch.nn.Module, opt) -> dict | None:
    """Resume from `out/latest`: load net, EMA and optimizer in place; return {"step", "losses", "seconds"}.

    None when `out` has no checkpoint. Everything is validated before anything is loaded, so a corrupt or hostile
    checkpoint raises ModelFileError naming the file and leaves the modules untouched. Partial checkpoint dirs
    (`.ckpt-*.tmp`) and temp files a killed run left in `out` are removed.
    """
    out = Path(out)
    d = latest_checkpoint(out)
    for partial in out.glob(".ckpt-*.tmp"):
        shutil.rmtree(partial, ignore_errors=True)
    remove_stale_temps(out)
    if d is None:
        return None
    state = _read_state(d, opt, step=int(CKPT_NAME.fullmatch(d.name).group(1)))
    loaded = {}
    for name, module in (("net", net), ("ema", ema)):
        file = d / f"{name}.safetensors"
        if not file.is_file():
            raise ModelFileError(f"{file} is missing; expected the {name} weights of the checkpoint")
        loaded[name] = read_tensors(file)
        check_state(module.state_dict(), loaded[name], file)
    optim = _optimizer_state(d / "optim.safetensors", opt, state.pop("param_groups"))
    net.load_state_dict(loaded["net"])
    ema.load_state_dict(loaded["ema"])
    try:
        opt.load_state_dict(optim)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ModelFileError(f"{d} holds optimizer state this optimizer cannot take ({_short(e)})") from None
    return state


def _read_state(d: Path, opt, *, step: int) -> dict:
    file = d / "state.json"
    state = schema.read_json(file, allow_nan=True)  # logged losses may be NaN if a run diverged
    if not isinstance(state, dict) or not {"step", "losses", "seconds", "param_groups"} <= set(state):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ModelFileError(f"{file} has keys {keys}; expected step, losses, seconds, param_groups (and others)")
    losses = state["losses"]
    seconds = state["seconds"]
    ok = (type(state["step"]) is int and state["step"] == step and type(seconds) in (int, float) and seconds >= 0
          and isinstance(losses, list)
          and all(isinstance(r, list) and len(r) == 2 and type(r[0]) is int and isinstance(r[1], int | float)
                  and not isinstance(r[1], bool) for r in losses))
    if not ok:
        raise ModelFileError(f"{file} is malformed; expected step = {step} (its dir's number), seconds >= 0 and "
                             f"losses as [[step, loss], ...]")
    own = opt.state_dict()["param_groups"]
    groups = state["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(own) or any(
            not isinstance(g, dict) or set(g) != set(o) or g["params"] != o["params"] or _bad_hyper(g)
            for g, o in zip(groups, own, strict=False)):
        raise ModelFileError(f"{file} has param_groups that do not match this model's optimizer; expected "
                             f"{len(own)} group(s) with keys {sorted(own[0]) if own else []} and finite values")
    return state


def _bad_hyper(group: dict) -> bool:
    values = [v for k, v in group.items() if k != "params"]
    flat = [e for v in values for e in (v if isinstance(v, list) else [v])]
    return any(not (e is None or isinstance(e, bool | str) or isinstance(e, int | float) and abs(e) < float("inf"))
               for e in flat)


def _optimizer_state(file: Path, opt, groups: list) -> dict:
    """Optimizer tensors "<param index>.<key>" → a torch optimizer state dict, validated against the params."""
    params = [p for g in opt.param_groups for p in g["params"]]
    tensors = read_tensors(file) if file.is_file() else None
    if tensors is None:
        raise ModelFileError(f"{file} is missing; expected the optimizer state of the checkpoint")
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        idx, _, key = name.partition(".")
        p = params[int(idx)] if idx.isascii() and idx.isdigit() and int(idx) < len(params) else None
        shape_ok = p is not None and (value.numel() == 1 if key == "step" else value.shape == p.shape)
        if not shape_ok or key not in ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq") \
                or not value.is_floating_point() or not torch.isfinite(value).all():
            raise ModelFileError(f"{file} holds {name!r} {tuple(value.shape)} {value.dtype}; expected finite "
                                 f"float '<param index>.<step|exp_avg|exp_avg_sq>' entries shaped like the params")
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": groups}
