"""Training checkpoints (`ckpt-NNNNNNNN/` + a `latest` pointer): written atomically, validated before loading.

Everything is read from safetensors and JSON only; a corrupt or hostile checkpoint raises ModelFileError naming the
file and leaves the modules untouched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from edgediff.errors import ModelFileError
from edgediff.format import jsonfile
from edgediff.format.files import remove_stale_temps, write_text
from edgediff.models.checkpoint import _short, check_state, read_tensors, write_tensors

CKPT_NAME = re.compile(r"ckpt-(\d{8})")
LATEST = "latest"






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
    state = jsonfile.read_json(file, allow_nan=True)  # logged losses may be NaN if a run diverged
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


def cpu_state(sd: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in sd.items()}


def write_state(out: Path, nets: dict, optim: dict, state: dict) -> Path:
    """Write ckpt-<step>/ completely (via a temp dir renamed into place) and return it."""
    step = state["step"]
    d = out / f"ckpt-{step:08d}"
    tmp = out / f".ckpt-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_tensors(tmp / "net.safetensors", nets["net"])
    write_tensors(tmp / "ema.safetensors", nets["ema"])
    write_tensors(tmp / "optim.safetensors", optim)
    write_text(tmp / "state.json", json.dumps(state))
    shutil.rmtree(d, ignore_errors=True)
    os.replace(tmp, d)
    return d


def point_latest(out: Path, d: Path) -> None:
    """Make `d` the checkpoint a resume starts from (atomically), then delete older ones."""
    write_text(out / "latest", d.name + "\n")
    for old in out.glob("ckpt-*"):
        if old != d:
            shutil.rmtree(old, ignore_errors=True)


def flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], list]:
    tensors = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"{idx}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
    return tensors, sd["param_groups"]
