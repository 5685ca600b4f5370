"""Fuzz suite (issue #7): seeded hostile inputs against every loader, runner, sampler and CLI verb.

Every case must end in the package's own exception type (the CLI: exit code 2 and one line on stderr), never a
foreign exception, a traceback or a crash, and must not write outside its output directory. Cases are generated
from one seed, so a failure names a reproducible case id. Native runtimes (ExecuTorch, OpenVINO, Core ML) load the
mutated model files in a worker subprocess, one batch per family, so a segfault or abort fails its case instead of
killing the session. `test_zz_case_count` (last) reports how many cases ran.

"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from edgediff import cli, converters
from edgediff.converters import build
from edgediff.errors import InputError, ModelFileError
from edgediff.format import artifact, jsonfile, schema, staging
from edgediff.format.configs import Request, TrainConfig, UNetConfig
from edgediff.format.precond import Preconditioning
from edgediff.models import checkpoint
from edgediff.models.eager import EagerRunner
from edgediff.models.unet import UNet
from edgediff.sampling import generate, schedules
from edgediff.sampling import samplers as sampling
from edgediff.training import checkpoints
from edgediff.training.data import ImageData
from tests.conftest import random_unet

SEED = 20260407
TINY = UNetConfig(resolution=8, channels=(8, 16), attention_levels=(), time_embed_dim=16, groups=4, num_classes=3)
BATCH = 2
COUNTS: collections.Counter = collections.Counter()  # cases run per family, reported by test_zz_case_count
EXPECTED: dict[str, int] = {}  # cases generated per family
def _cases(family: str, cases: list) -> list:
    EXPECTED[family] = len(cases)
    return cases


class Payload:
    """Unpickling this creates MARKER: proof that something executed code from a file."""

    def __reduce__(self):
        return (open, (str(MARKER), "w"))


MARKER = Path(tempfile.gettempdir()) / f"edgediff-hostile-{os.getpid()}.pwned"
PICKLE = pickle.dumps(Payload())


@pytest.fixture(autouse=True)
def never_unpickled():
    yield
    assert not MARKER.exists(), "a pickle payload was executed"


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file, dir and link under `roots` with its size and mtime."""
    out = {}
    for root in roots:
        for p in [root, *root.rglob("*")] if root.exists() else []:
            st = p.lstat()  # a dir's own mtime is left out: a new entry in it is reported by name
            out[str(p)] = (True, 0, 0) if p.is_dir() else (False, st.st_size, st.st_mtime_ns)
    return out


def assert_confined(before: dict, after: dict, allowed: tuple[Path, ...] = ()) -> None:
    """Nothing outside `allowed` was created, changed or removed."""
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    outside = sorted(p for p in changed if not any(p == str(a) or p.startswith(f"{a}{os.sep}") for a in allowed))
    assert outside == [], f"written outside the output directory: {outside[:5]}"


def tiny_net(seed: int = 0) -> UNet:
    return random_unet(TINY, seed=seed).eval()


@pytest.fixture(scope="module")
def res(tmp_path_factory) -> Path:
    """Shared read-only resources: a tiny model dir, its image folder, a trained run, a fake artifact."""
    root = tmp_path_factory.mktemp("res")
    imgs = root / "imgs" / "a"
    imgs.mkdir(parents=True)
    from PIL import Image

    rng = np.random.default_rng(SEED)
    for i in range(4):
        Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(imgs / f"{i}.png")
    training = {"steps": 2, "batch_size": 2, "precision": "fp32", "data": str(root / "imgs"), "threads": 1,
                "checkpoint_every": 2, "log_every": 1, "lr": 1e-3}
    checkpoint.save(root / "model", tiny_net(), {"name": "tiny", "precond": Preconditioning().to_dict(),
                                                 "training": training, "data": str(root / "imgs"),
                                                 "sampler_defaults": {"sampler": "euler", "steps": 2,
                                                                      "guidance": 1.0}})
    _train_run(root / "run")
    _fake_artifact(root / "art")
    return root


def _train_run(out: Path) -> None:
    from edgediff.training import loop as train

    rng = np.random.default_rng(SEED)
    data = ImageData(rng.uniform(-1, 1, (8, 1, 8, 8)).astype(np.float32), np.arange(8) % 3, ("a", "b", "c"))
    cfg = TrainConfig(steps=2, batch_size=4, precision="fp32", checkpoint_every=2, log_every=1, threads=1)
    threads = torch.get_num_threads()
    try:
        train.fit(TINY, cfg, out, data=data, progress=False)
    finally:
        torch.set_num_threads(threads)


def _fake_artifact(out: Path) -> None:
    """An 'openvino' artifact with stand-in model bytes: enough for everything that happens before a runtime."""
    spec = artifact.make_spec(batch=BATCH, channels=1, resolution=8, num_classes=3, label_dtype="int32")
    header = build.header_for(tiny_net(), spec, backend="openvino", precision="fp32", precond=Preconditioning(),
                                 sampler_defaults={"sampler": "euler", "steps": 2}, source={}, tools=())
    with staging.staging(out) as tmp:
        (tmp / "model.xml").write_bytes(b"<?xml version='1.0'?><net/>")
        (tmp / "model.bin").write_bytes(bytes(range(256)) * 4)
        staging.commit(tmp, out, header, model_file="model.xml", op_coverage={}, parity=None)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _flip(file: Path, frac: float, bit: int) -> None:
    data = bytearray(file.read_bytes())
    i = min(int(frac * len(data)), len(data) - 1)
    data[i] ^= 1 << bit
    file.write_bytes(bytes(data))


def _truncate(file: Path, frac: float) -> None:
    data = file.read_bytes()
    file.write_bytes(data[:int(frac * len(data))])


# ------------------------------------------------------------------------------ A. model dirs (weights + config)


def _weights_cases() -> list:
    rng = np.random.default_rng([SEED, 1])
    cases = [("truncate", round(float(f), 4)) for f in [0.0, 0.999, *rng.uniform(0, 1, 13)]]
    cases += [("flip", (round(float(rng.uniform()), 4), int(rng.integers(8)))) for _ in range(25)]
    cases += [("flip_header", (int(rng.integers(8, 200)), int(rng.integers(8)))) for _ in range(8)]
    cases += [("append", n) for n in (1, 8, 4096)]
    cases += [("shape", kind) for kind in ("extra_dim", "shrink", "flatten", "scalar", "transpose", "empty")]
    cases += [("dtype", d) for d in ("float64", "float16", "bfloat16", "int32", "int64", "uint8", "bool")]
    cases += [("keys", k) for k in ("missing", "missing_all", "extra", "extra_many", "renamed", "empty_name")]
    cases += [("nonfinite", v) for v in ("nan", "inf", "-inf")]
    cases += [("raw", k) for k in ("empty", "pickle", "torch_save", "header_huge", "header_past_end", "not_json",
                                   "overlap", "dir", "symlink_null", "text")]
    return _cases("weights", [pytest.param(k, v, id=f"{k}-{i}") for i, (k, v) in enumerate(cases)])


def _mutate_weights(file: Path, kind: str, value) -> bool:
    """Apply a mutation; return True if the result may legitimately load (a flip that changes nothing)."""
    state = checkpoint.read_tensors(file)
    key = sorted(k for k in state if state[k].ndim >= 2)[0]
    if kind == "truncate":
        _truncate(file, value)
    elif kind in ("flip", "flip_header"):
        _flip(file, value[0] if kind == "flip" else value[0] / file.stat().st_size, value[1])
        return True
    elif kind == "append":
        file.write_bytes(file.read_bytes() + b"\x01" * value)
    elif kind == "shape":
        v = state[key]
        state[key] = {"extra_dim": v[None], "shrink": v[:1], "flatten": v.reshape(-1), "scalar": v.reshape(-1)[0],
                      "transpose": v.transpose(0, 1).contiguous(), "empty": v[:0]}[value]
        checkpoint.write_tensors(file, state)
    elif kind == "dtype":
        state[key] = state[key].to(getattr(torch, value))
        checkpoint.write_tensors(file, state)
        return value in ("float16", "bfloat16")  # half-precision storage of float32 weights loads upcast
    elif kind == "keys":
        _mutate_keys(state, key, value)
        checkpoint.write_tensors(file, state)
    elif kind == "nonfinite":
        state[key] = state[key].clone().fill_(float(value))
        checkpoint.write_tensors(file, state)
    else:
        _raw_weights(file, value)
    return False


def _mutate_keys(state: dict, key: str, how: str) -> None:
    if how == "missing":
        del state[key]
    elif how == "missing_all":
        for k in list(state)[1:]:
            del state[k]
    elif how == "extra":
        state["evil.weight"] = torch.zeros(3)
    elif how == "extra_many":
        state.update({f"junk.{i}": torch.zeros(1) for i in range(100)})
    elif how == "renamed":
        state[key + "_x"] = state.pop(key)
    else:
        state[""] = state.pop(key)


def _raw_weights(file: Path, how: str) -> None:
    import struct

    if how == "empty":
        file.write_bytes(b"")
    elif how == "pickle":
        file.write_bytes(PICKLE)
    elif how == "torch_save":
        torch.save({"conv_out.weight": Payload()}, file)
    elif how == "header_huge":
        file.write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    elif how == "header_past_end":
        file.write_bytes(struct.pack("<Q", 1000) + b'{"a": 1}')
    elif how == "not_json":
        file.write_bytes(struct.pack("<Q", 8) + b"not json")
    elif how == "overlap":
        header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                             "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
        file.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 12)
    elif how == "dir":
        file.unlink()
        file.mkdir()
    elif how == "symlink_null":
        file.unlink()
        file.symlink_to("/dev/null")
    else:
        file.write_text("weights: please")


@pytest.mark.parametrize("kind, value", _weights_cases())
def test_hostile_weights(res, tmp_path, kind, value):
    m = _copy(res / "model", tmp_path / "m")
    harmless = _mutate_weights(m / checkpoint.WEIGHTS_FILE, kind, value)
    before = snapshot(tmp_path, res)
    COUNTS["weights"] += 1
    try:
        md = checkpoint.load(m)
    except ModelFileError:
        pass
    else:
        assert harmless, f"{kind} {value} loaded without an error"
        ref = checkpoint.load(res / "model").net.state_dict()
        if kind == "dtype":  # the one tensor stored in half precision comes back rounded, as float32
            key = sorted(k for k in ref if ref[k].ndim >= 2)[0]
            ref[key] = ref[key].to(getattr(torch, value)).float()
        torch.testing.assert_close(md.net.state_dict(), ref, rtol=0, atol=0)
    assert_confined(before, snapshot(tmp_path, res))


def _wrong_type(hint) -> object:
    """A JSON value that does not fit `hint`."""
    origin = getattr(hint, "__origin__", None)
    if hint is int:
        return "7"
    if hint is float:
        return "0.5"
    if hint is bool:
        return "yes"
    if hint is str:
        return 5
    if origin in (tuple, list) or hint in (tuple, list):
        return {"a": 1}
    if origin is dict or hint is dict:
        return [1, 2]
    return [[{"x": None}]]


def _config_cases() -> list:
    sections = {"unet": UNetConfig, "precond": Preconditioning, "training": TrainConfig,
                "sampler_defaults": Request}
    cases = [(s, k, _wrong_type(h)) for s, cls in sections.items() for k, h in schema.hints(cls).items()]
    cases += [(s, "not_a_field", 1) for s in sections]
    cases += [("unet", k, v) for k, v in [
        ("resolution", 0), ("resolution", 3), ("resolution", 2048), ("resolution", -8), ("in_channels", 0),
        ("in_channels", 65), ("channels", []), ("channels", [0]), ("channels", [5000]), ("channels", [8] * 9),
        ("channels", [4096] * 8), ("blocks_per_level", 0), ("blocks_per_level", 17), ("attention_levels", [5]),
        ("attention_levels", [-1]), ("attention_heads", 0), ("groups", 0), ("num_classes", -1),
        ("num_classes", 10**6), ("time_embed_dim", 0), ("time_embed_dim", 3), ("time_embed_dim", 10**5),
        ("dropout", -0.1), ("dropout", 1.0), ("norm", "batch"), ("upsample", "pixelshuffle"),
        ("widths", {"x": 0}), ("widths", {"x": 10**6}), ("channels", [1e3]), ("resolution", 8.0)]]
    cases += [("training", k, v) for k, v in [
        ("steps", 0), ("batch_size", 0), ("batch_size", 10**6), ("lr", 0), ("lr", 100), ("ema_decay", 1.5),
        ("precision", "fp8"), ("seed", -1), ("seed", 2**40), ("threads", -1), ("threads", 5000),
        ("checkpoint_every", 0), ("label_dropout", 2)]]
    cases += [("precond", k, v) for k, v in [("sigma_data", 0), ("sigma_data", -1), ("sigma_min", 0),
                                             ("sigma_max", 1e9), ("sigma_min", 100.0), ("kind", "vp")]]
    cases += [("sampler_defaults", k, v) for k, v in [("sampler", "nope"), ("steps", 0), ("steps", 5000),
                                                      ("guidance", -1), ("guidance", 1000)]]
    cases += [("training_state", k, v) for k, v in [("step", -1), ("seconds", -5), ("step", "x"), ("extra", 1)]]
    cases += [(None, k, None) for k in (
        "no_unet", "unet_list", "top_list", "top_string", "format", "format_version_2", "format_version_str",
        "format_version_true", "nan", "infinity", "deep", "huge", "not_utf8", "empty", "dir", "name_type",
        "truncated_1", "truncated_2", "truncated_3", "truncated_4", "pickle", "null_byte")]
    return _cases("config", [pytest.param(s, k, v, id=f"{s}.{k}-{i}") for i, (s, k, v) in enumerate(cases)])


def _mutate_config_text(file: Path, how: str) -> None:
    meta = json.loads(file.read_text())
    text = file.read_text()
    edits = {"no_unet": lambda: json.dumps({k: v for k, v in meta.items() if k != "unet"}),
             "unet_list": lambda: json.dumps({**meta, "unet": [1, 2]}), "top_list": lambda: "[1, 2]",
             "top_string": lambda: '"edgediff.model"', "format": lambda: json.dumps({**meta, "format": "pickle"}),
             "format_version_2": lambda: json.dumps({**meta, "format_version": 2}),
             "format_version_str": lambda: json.dumps({**meta, "format_version": "1"}),
             "format_version_true": lambda: json.dumps({**meta, "format_version": True}),
             "nan": lambda: text.replace('"dropout": 0.0', '"dropout": NaN'),
             "infinity": lambda: text.replace('"sigma_max": 80.0', '"sigma_max": Infinity'),
             "deep": lambda: json.dumps({**meta, "name": None})[:-1] + ', "x": ' + "[" * 3000 + "]" * 3000 + "}",
             "huge": lambda: json.dumps({**meta, "junk": "x" * (jsonfile.MAX_JSON_BYTES + 1)}),
             "empty": lambda: "", "name_type": lambda: json.dumps({**meta, "name": {"a": 1}}),
             "null_byte": lambda: text.replace('"unet"', '"un\\u0000et"')}
    if how in edits:
        file.write_text(edits[how]())
    elif how == "not_utf8":
        file.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    elif how == "dir":
        file.unlink()
        file.mkdir()
    elif how == "pickle":
        file.write_bytes(PICKLE)
    else:
        file.write_text(text[:len(text) * int(how[-1]) // 5 - 1])


@pytest.mark.parametrize("section, key, value", _config_cases())
def test_hostile_config(res, tmp_path, section, key, value):
    m = _copy(res / "model", tmp_path / "m")
    file = m / checkpoint.CONFIG_FILE
    if section is None:
        _mutate_config_text(file, key)
    else:
        meta = json.loads(file.read_text())
        meta.setdefault(section, {})[key] = value
        file.write_text(json.dumps(meta))
    before = snapshot(tmp_path, res)
    COUNTS["config"] += 1
    with pytest.raises(ModelFileError):
        checkpoint.load(m)
    assert_confined(before, snapshot(tmp_path, res))


# ------------------------------------------------------------------------------------ B. training checkpoints


def _resume_cases() -> list:
    cases = [("latest", v) for v in ("../../etc", "/etc/passwd", "ckpt-2", "ckpt-00000003", "ckpt-00000002/..",
                                     "", "\xff\xfe", "ckpt-00000002\nckpt-00000001", "dir", "ckpt-0000000²")]
    cases += [("ckpt_symlink", None), ("state", "missing")]
    cases += [("state_json", v) for v in (
        {"drop": "step"}, {"drop": "param_groups"}, {"step": 3}, {"step": True}, {"step": "2"},
        {"losses": [[1]]}, {"losses": "low"}, {"losses": [["1", 0.5]]}, {"seconds": -1}, {"seconds": False},
        {"param_groups": []}, {"param_groups": "adam"}, {"pg_params": [0, 1]}, {"pg_lr": "nan"},
        {"pg_lr": "big"}, {"pg_extra": 1}, {"raw": "[]"}, {"raw": "{"}, {"raw": "\x00"})]
    cases += [(f"tensors:{f}", v) for f in ("net", "ema", "optim")
              for v in ("truncate", "flip", "missing", "extra_key", "wrong_shape", "pickle")]
    cases += [("optim_key", v) for v in ("999.exp_avg", "0.momentum", "x.exp_avg", "².exp_avg", "0.exp_avg_nan",
                                         "0.step_int", "0.")]
    return _cases("resume", [pytest.param(k, v, id=f"{k}-{i}") for i, (k, v) in enumerate(cases)])


def _mutate_run(out: Path, kind: str, value) -> None:
    d = out / "ckpt-00000002"
    if kind == "latest":
        if value == "dir":
            (out / "latest").unlink()
            (out / "latest").mkdir()
        else:
            (out / "latest").write_bytes(value.encode("utf-8", "surrogateescape"))
    elif kind == "ckpt_symlink":
        outside = out.parent / "elsewhere"
        shutil.move(d, outside)
        d.symlink_to(outside, target_is_directory=True)
    elif kind == "state":
        (d / "state.json").unlink()
    elif kind == "state_json":
        _mutate_state_json(d / "state.json", value)
    elif kind.startswith("tensors:"):
        _mutate_tensor_file(d / f"{kind.split(':')[1]}.safetensors", value)
    else:
        _mutate_optim_key(d / "optim.safetensors", value)


def _mutate_state_json(file: Path, change: dict) -> None:
    state = json.loads(file.read_text())
    if "raw" in change:
        file.write_text(change["raw"])
        return
    if "drop" in change:
        del state[change["drop"]]
    for k, v in change.items():
        if k.startswith("pg_"):
            g = state["param_groups"][0]
            if k == "pg_params":
                g["params"] = v
            elif k == "pg_lr":
                g["lr"] = float("nan") if v == "nan" else 1e400 if v == "big" else v
            else:
                g["evil"] = v
        elif k != "drop":
            state[k] = v
    file.write_text(json.dumps(state))


def _mutate_tensor_file(file: Path, how: str) -> None:
    if how == "truncate":
        _truncate(file, 0.5)
    elif how == "flip":
        _flip(file, 0.9, 3)
    elif how == "missing":
        file.unlink()
    elif how == "pickle":
        file.write_bytes(PICKLE)
    else:
        state = checkpoint.read_tensors(file)
        key = sorted(state)[0]
        if how == "extra_key":
            state["evil"] = torch.zeros(2)
        else:
            state[key] = torch.zeros(3, 3, 3)
        checkpoint.write_tensors(file, state)


def _mutate_optim_key(file: Path, name: str) -> None:
    state = checkpoint.read_tensors(file)
    like = state["0.exp_avg"]
    if name == "0.exp_avg_nan":
        state["0.exp_avg"] = torch.full_like(like, float("nan"))
    elif name == "0.step_int":
        state["0.step"] = torch.tensor(3)
    else:
        state[name] = torch.zeros_like(like)
    checkpoint.write_tensors(file, state)


def _fresh_modules():
    net = tiny_net(seed=1).train()
    ema = copy.deepcopy(net).requires_grad_(False)
    return net, ema, torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)


@pytest.mark.parametrize("kind, value", _resume_cases())
def test_hostile_training_checkpoint(res, tmp_path, kind, value):
    out = _copy(res / "run", tmp_path / "run")
    _mutate_run(out, kind, value)
    net, ema, opt = _fresh_modules()
    before_weights = {k: v.clone() for k, v in net.state_dict().items()}
    before = snapshot(tmp_path, res)
    COUNTS["resume"] += 1
    with pytest.raises(ModelFileError):
        checkpoints.load_training_state(out, net, ema, opt)
    torch.testing.assert_close(net.state_dict(), before_weights, rtol=0, atol=0)
    assert not opt.state_dict()["state"], "the optimizer was changed by a refused checkpoint"
    assert_confined(before, snapshot(tmp_path, res))


def test_the_training_checkpoint_fixture_itself_resumes(res, tmp_path):
    out = _copy(res / "run", tmp_path / "run")
    state = checkpoints.load_training_state(out, *_fresh_modules())
    assert state["step"] == 2


# --------------------------------------------------------------------------------------------- C. artifact.json


UNSAFE_NAMES = ["../../x", "../model.bin", "/etc/passwd", "a/../../b", "..", ".", "", "a\\..\\b", "a//b", "x/",
                "./model.bin", "a\x00b", "~/.ssh/id_rsa", "x" * 2000]


def _artifact_cases() -> list:
    fields = {k: h for k, h in schema.hints(artifact.Artifact).items() if k != "path"}
    cases = [("missing", k) for k in sorted(schema.required(artifact.Artifact) - {"path"})]
    cases += [("wrong_type", k) for k in sorted(fields)]
    cases += [("sha_name", n) for n in UNSAFE_NAMES]
    cases += [("model_file", n) for n in UNSAFE_NAMES[:8] + ["model.pte", "model.xml/../model.bin"]]
    cases += [("schema_version", v) for v in (0, 2, -1, "1", 1.5, True, None, 10**30)]
    cases += [("spec", v) for v in ("no_x", "extra_input", "x_3d", "x_zero", "x_huge", "dtype_object", "t_shape",
                                    "not_dict", "shape_str", "label_float64", "x_9d")]
    cases += [("sha_value", v) for v in ("nothex" * 8, "ab", "A" * 64, 5)]
    cases += [("raw", v) for v in ("nan", "infinity", "deep", "not_json", "empty", "top_list", "huge", "pickle",
                                   "utf16", "dir")]
    cases += [("unknown", v) for v in ("evil", "path")]
    cases += [("files", v) for v in ("extra_file", "listed_missing", "symlink_outside", "parent_symlink",
                                     "model_dir_instead", "extra_dir_file")]
    cases += [("precond", v) for v in ({"kind": "vp"}, {"sigma_data": -1}, {"sigma_min": "0"}, {"evil": 1})]
    cases += [("sampler_defaults", v) for v in ({"sampler": "nope"}, {"steps": 0}, {"evil": 1})]
    cases += [("value", v) for v in (("size_bytes", -1), ("num_classes", -3), ("backend", "open vino"),
                                     ("precision", ""), ("parity_db", "high"), ("backend", "../x"))]
    return _cases("artifact", [pytest.param(k, v, id=f"{k}-{i}") for i, (k, v) in enumerate(cases)])


def _mutate_artifact(path: Path, kind: str, value) -> None:
    file = path / artifact.ARTIFACT_FILE
    meta = json.loads(file.read_text())
    if kind == "raw":
        _raw_artifact_json(file, meta, value)
        return
    if kind == "files":
        _artifact_files(path, value)
        return
    if kind == "missing":
        del meta[value]
    elif kind == "wrong_type":
        meta[value] = _wrong_type(schema.hints(artifact.Artifact)[value])
    elif kind == "sha_name":
        meta["sha256"][value] = "0" * 64
    elif kind == "model_file":
        meta["model_file"] = value
    elif kind == "schema_version":
        meta["schema_version"] = value
    elif kind == "spec":
        meta["spec"] = _bad_spec(meta["spec"], value)
    elif kind == "sha_value":
        meta["sha256"]["model.bin"] = value
    elif kind == "unknown":
        meta[value] = "/tmp"
    elif kind in ("precond", "sampler_defaults"):
        meta[kind] = {**meta[kind], **value}
    else:
        meta[value[0]] = value[1]
    file.write_text(json.dumps(meta))


def _bad_spec(spec: dict, how: str):
    x, t = spec["x"], spec["t"]
    return {"no_x": {"t": t}, "extra_input": {**spec, "y": t}, "x_3d": {**spec, "x": [x[0][1:], "float32"]},
            "x_zero": {**spec, "x": [[0, 1, 8, 8], "float32"]}, "x_huge": {**spec, "x": [[1, 1, 10**9, 8], "float32"]},
            "dtype_object": {**spec, "x": [x[0], "object"]}, "t_shape": {**spec, "t": [[5], "float32"]},
            "not_dict": [x, t], "shape_str": {**spec, "x": ["1,1,8,8", "float32"]},
            "label_float64": {**spec, "label": [[BATCH], "float64"]},
            "x_9d": {**spec, "x": [[1] * 9, "float32"]}}[how]


def _raw_artifact_json(file: Path, meta: dict, how: str) -> None:
    text = json.dumps(meta)
    if how == "nan":
        file.write_text(text.replace('"parity_db": null', '"parity_db": NaN'))
    elif how == "infinity":
        file.write_text(text.replace('"size_bytes": ', '"size_bytes": Infinity, "x": '))
    elif how == "deep":
        file.write_text(text[:-1] + ', "op_coverage": ' + "[" * 100 + "]" * 100 + "}")
    elif how == "not_json":
        file.write_text(text[: len(text) // 2])
    elif how == "empty":
        file.write_text("")
    elif how == "top_list":
        file.write_text(json.dumps([meta]))
    elif how == "huge":
        file.write_text(json.dumps({**meta, "source": {"x": "y" * (jsonfile.MAX_JSON_BYTES + 1)}}))
    elif how == "pickle":
        file.write_bytes(PICKLE)
    elif how == "utf16":
        file.write_bytes(text.encode("utf-16"))
    else:
        file.unlink()
        file.mkdir()


def _artifact_files(path: Path, how: str) -> None:
    if how == "extra_file":
        (path / "evil.so").write_bytes(b"\x7fELF")
    elif how == "listed_missing":
        (path / "model.bin").unlink()
    elif how == "symlink_outside":
        outside = path.parent / "outside.bin"
        shutil.copy(path / "model.bin", outside)  # same bytes, so only the link itself is wrong
        (path / "model.bin").unlink()
        (path / "model.bin").symlink_to(outside)
    elif how == "parent_symlink":
        meta = json.loads((path / artifact.ARTIFACT_FILE).read_text())
        (path.parent / "sub").mkdir()
        (path.parent / "sub" / "w.bin").write_bytes(b"1")
        (path / "sub").symlink_to(path.parent / "sub", target_is_directory=True)
        meta["sha256"]["sub/w.bin"] = artifact.file_sha256(path.parent / "sub" / "w.bin")
        (path / artifact.ARTIFACT_FILE).write_text(json.dumps(meta))
    elif how == "model_dir_instead":
        (path / "model.bin").unlink()
        (path / "model.bin").mkdir()
    else:
        (path / "extra").mkdir()
        (path / "extra" / "x").write_text("x")


@pytest.mark.parametrize("kind, value", _artifact_cases())
def test_hostile_artifact_json(res, tmp_path, kind, value):
    path = _copy(res / "art", tmp_path / "art")
    _mutate_artifact(path, kind, value)
    before = snapshot(tmp_path, res)
    COUNTS["artifact"] += 1
    with pytest.raises(ModelFileError):
        artifact.read(path)
    assert_confined(before, snapshot(tmp_path, res))


def test_the_fake_artifact_itself_reads(res):
    assert artifact.read(res / "art").backend == "openvino"


# ----------------------------------------------------------------- D. real model files under native runtimes

PACKAGES = {n: converters.get(n).requires[0] for n in converters.convertible()}  # every registered backend
LOAD_OPTIONS = {n: {"threads": 1} for n in PACKAGES}

WORKER = r'''
import json, sys, traceback
import numpy as np
from edgediff import converters
from edgediff.errors import EdgediffError

cases = json.load(open(sys.argv[1]))
log = open(sys.argv[2], "a", buffering=1)
runners = {}


def array(shape, dtype, fill):
    a = np.zeros(shape, dtype=dtype)
    if fill is not None:
        a[...] = float(fill) if a.dtype.kind == "f" else int(fill)
    return a


for c in cases:
    log.write(json.dumps({"id": c["id"], "event": "start"}) + "\n")
    try:
        key = (c["backend"], c["path"])
        runner = runners.get(key) if c.get("reuse") else None
        if runner is None:
            runner = converters.get(c["backend"]).load(c["path"], **c.get("options", {}))
            if c.get("reuse"):
                runners[key] = runner
        if c.get("inputs"):
            x, t, label = (None if v is None else array(*v) for v in c["inputs"])
            out = runner(x, t, label)
            assert out.shape == x.shape and out.dtype == np.float32
        outcome, detail = "ok", ""
    except EdgediffError as e:
        outcome, detail = "ours", f"{type(e).__name__}: {e}"
    except BaseException as e:
        outcome, detail = "foreign", "".join(traceback.format_exception(type(e), e, e.__traceback__))[-1500:]
    log.write(json.dumps({"id": c["id"], "event": "end", "outcome": outcome, "detail": detail[:2000]}) + "\n")
'''


def run_batch(cases: list[dict], work: Path, timeout: float = 300) -> dict[str, dict]:
    """Run cases in worker subprocesses; a crash marks the running case and the rest go to a fresh worker."""
    (work / "worker.py").write_text(WORKER)
    results: dict[str, dict] = {}
    pending = list(cases)
    for attempt in range(len(cases) + 1):
        if not pending:
            break
        (work / "cases.json").write_text(json.dumps(pending))
        log = work / f"log{attempt}.jsonl"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
        proc = subprocess.run([sys.executable, str(work / "worker.py"), str(work / "cases.json"), str(log)],
                              cwd=work, env=env, capture_output=True, text=True, errors="replace", timeout=timeout)
        events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        started = [e["id"] for e in events if e["event"] == "start"]
        for e in events:
            if e["event"] == "end":
                results[e["id"]] = e
        running = [i for i in started if i not in results]
        for i in running:
            results[i] = {"outcome": "crash", "detail": f"exit {proc.returncode}: {proc.stderr[-1500:]}"}
        if not running and proc.returncode != 0:
            for c in pending:
                results.setdefault(c["id"], {"outcome": "worker failed", "detail": proc.stderr[-2000:]})
        pending = [c for c in pending if c["id"] not in results]
    return results


@pytest.fixture(scope="module")
def real(request, tmp_path_factory) -> dict[str, artifact.Artifact]:
    """One tiny real artifact per installed backend; kept in pytest's cache dir and reused while its key holds."""
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    root = cache.mkdir("edgediff-hostile-artifacts") if cache is not None else tmp_path_factory.mktemp("arts")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    built = {}
    try:
        for backend, package in PACKAGES.items():
            try:
                __import__(package)
            except ImportError:
                continue
            mod = converters.get(backend)
            spec = artifact.make_spec(batch=BATCH, channels=1, resolution=8, num_classes=3,
                                      label_dtype=mod.label_dtype)
            built[backend] = mod.convert(tiny_net(), spec, root / backend, precond=Preconditioning(),
                                         sampler_defaults={"sampler": "euler", "steps": 2}, source={"name": "tiny"},
                                         **({"threads": 1} if backend == "openvino" else {}))
    finally:
        torch.set_num_threads(threads)
    return built


def _main_file(art: artifact.Artifact) -> str:
    return max(art.sha256, key=lambda n: (art.path / n).stat().st_size)


def _model_file_cases(real: dict, work: Path) -> list[dict]:
    """Mutated copies of each real artifact that the sha256 check must stop before any runtime sees them."""
    rng = np.random.default_rng([SEED, 4])
    cases = []
    backends = sorted(real)
    for b in backends:
        other = real[backends[(backends.index(b) + 1) % len(backends)]]
        for how in ("trunc0", "trunc_half", "trunc_minus1", "flip", "flip", "flip", "append", "delete", "pickle",
                    "swap_model", "swap_json", "extra_file", "symlink", "traversal", "no_json"):
            path = _copy(real[b].path, work / f"{b}-{len(cases)}")
            _mutate_model_file(path, _main_file(real[b]), how, other, rng)
            cases.append({"id": f"{b}:{how}:{len(cases)}", "backend": b, "path": str(path),
                          "options": LOAD_OPTIONS.get(b, {})})
        cases.append({"id": f"{b}:wrong_backend", "backend": "openvino" if b != "openvino" else "executorch",
                      "path": str(real[b].path)})
    return cases


def _mutate_model_file(path: Path, name: str, how: str, other: artifact.Artifact, rng) -> None:
    f = path / name
    if how.startswith("trunc"):
        n = f.stat().st_size
        f.write_bytes(f.read_bytes()[:{"trunc0": 0, "trunc_half": n // 2, "trunc_minus1": n - 1}[how]])
    elif how == "flip":
        _flip(f, float(rng.uniform()), int(rng.integers(8)))
    elif how == "append":
        f.write_bytes(f.read_bytes() + b"\0" * 16)
    elif how == "delete":
        f.unlink()
    elif how == "pickle":
        f.write_bytes(PICKLE)
    elif how == "swap_model":
        f.write_bytes((other.path / _main_file(other)).read_bytes())
    elif how == "swap_json":
        shutil.copy(other.path / artifact.ARTIFACT_FILE, path / artifact.ARTIFACT_FILE)
    elif how == "extra_file":
        (path / "libevil.so").write_bytes(b"\x7fELF")
    elif how == "symlink":
        outside = path.parent / f"{path.name}-outside"
        shutil.copy(f, outside)
        f.unlink()
        f.symlink_to(outside)
    elif how == "traversal":
        meta = json.loads((path / artifact.ARTIFACT_FILE).read_text())
        meta["model_file"] = f"../{other.path.name}/{other.model_file}"
        (path / artifact.ARTIFACT_FILE).write_text(json.dumps(meta))
    else:
        (path / artifact.ARTIFACT_FILE).unlink()


def _input_cases(real: dict) -> list[dict]:
    """Bad runner inputs on real runners: each must be refused (InputError) before the runtime runs."""
    good_x, good_t = [[BATCH, 1, 8, 8], "float32", 0], [[BATCH], "float32", 0]
    label = [[BATCH], "int64", 1]
    bad = {"control": (good_x, good_t, label), "x_batch": ([[BATCH + 1, 1, 8, 8], "float32", 0], good_t, label),
           "x_channels": ([[BATCH, 2, 8, 8], "float32", 0], good_t, label),
           "x_res": ([[BATCH, 1, 4, 4], "float32", 0], good_t, label),
           "x_3d": ([[BATCH, 8, 8], "float32", 0], good_t, label),
           "x_f64": ([[BATCH, 1, 8, 8], "float64", 0], good_t, label),
           "x_f16": ([[BATCH, 1, 8, 8], "float16", 0], good_t, label),
           "x_int": ([[BATCH, 1, 8, 8], "int32", 0], good_t, label),
           "x_nan": ([[BATCH, 1, 8, 8], "float32", "nan"], good_t, label),
           "t_inf": (good_x, [[BATCH], "float32", "inf"], label), "t_shape": (good_x, [[1], "float32", 0], label),
           "t_f64": (good_x, [[BATCH], "float64", 0], label),
           "label_float": (good_x, good_t, [[BATCH], "float32", 1]),
           "label_neg": (good_x, good_t, [[BATCH], "int64", -1]),
           "label_big": (good_x, good_t, [[BATCH], "int64", 4]), "label_bool": (good_x, good_t, [[BATCH], "bool", 1]),
           "label_shape": (good_x, good_t, [[BATCH, 1], "int64", 1])}
    runnable = [b for b in sorted(real) if converters.get(b).unavailable() is None]
    return [{"id": f"{b}:input:{k}", "backend": b, "path": str(real[b].path), "reuse": True, "inputs": list(v),
             "options": LOAD_OPTIONS.get(b, {}), "expect": "ok" if k == "control" else "ours"}
            for b in runnable for k, v in bad.items()]


def _rehashed_cases(real: dict, backend: str, work: Path) -> list[dict]:
    """Corrupt model files whose sha256 was rewritten to match: the runtime itself sees them."""
    art = real[backend]
    names = sorted(art.sha256, key=lambda n: -(art.path / n).stat().st_size)[:2]
    cases = []
    for name in names:
        for how in ("junk", "trunc_half", "empty", "pickle", "header_flip"):
            path = _copy(art.path, work / f"re-{backend}-{len(cases)}")
            f = path / name
            data = f.read_bytes()
            junk = np.random.default_rng([SEED, len(cases)]).bytes(len(data))
            new = {"junk": junk, "trunc_half": data[:len(data) // 2], "empty": b"", "pickle": PICKLE,
                   "header_flip": bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\xff"}[how]
            f.write_bytes(new)
            meta = json.loads((path / artifact.ARTIFACT_FILE).read_text())
            meta["sha256"][name] = artifact.file_sha256(f)
            (path / artifact.ARTIFACT_FILE).write_text(json.dumps(meta))
            cases.append({"id": f"{backend}:rehashed:{name}:{how}", "backend": backend, "path": str(path),
                          "options": LOAD_OPTIONS.get(backend, {})})
    return cases


def _check_results(cases: list[dict], results: dict, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for c in cases:
        r = results.get(c["id"], {"outcome": "not run", "detail": ""})
        want = (c["expect"],) if "expect" in c else allowed
        if r["outcome"] not in want:
            bad.append(f"{c['id']}: {r['outcome']} (expected {'/'.join(want)}): {r['detail'][-600:]}")
    return bad


def test_hostile_model_files_and_runner_inputs(real, tmp_path, res):
    if not real:
        pytest.skip("no native backend installed")
    work, worker = tmp_path / "cases", tmp_path / "worker"
    work.mkdir()
    worker.mkdir()
    cases = _model_file_cases(real, work) + _input_cases(real)
    sources = [a.path for a in real.values()]
    before = snapshot(tmp_path, res, *sources)
    results = run_batch(cases, worker)
    COUNTS["model_files"] += len(cases)
    EXPECTED["model_files"] = len(cases)
    assert_confined(before, snapshot(tmp_path, res, *sources), allowed=(worker,))
    assert _check_results(cases, results, ("ours",)) == []
    assert not MARKER.exists()


@pytest.mark.parametrize("backend", list(PACKAGES))
def test_rehashed_corrupt_model_files_reach_the_runtime_safely(real, tmp_path, backend, request):
    if backend not in real:
        pytest.skip(f"{backend} is not installed")
    work = tmp_path / "work"
    work.mkdir()
    cases = _rehashed_cases(real, backend, work)
    results = run_batch(cases, work)
    COUNTS["rehashed"] += len(cases)
    EXPECTED["rehashed"] = EXPECTED.get("rehashed", 0) + len(cases)
    assert _check_results(cases, results, ("ours", "ok")) == []  # "ok": garbage weights may load and run
    assert not MARKER.exists()


# --------------------------------------------------------------------------------------- E. sampler arguments


def _denoiser(x, sigma):
    return x * 0.5


def _sampler_cases() -> list:
    k = schedules.karras_sigmas

    def case(name, call):
        return pytest.param(name, call, id=name)

    def sample(**kw):
        return lambda: sampling.sample(_denoiser, kw.pop("shape", (1, 1, 4, 4)), rng=np.random.default_rng(0),
                                       **{"steps": 2, **kw})

    cases = [case(f"karras_n={n!r}", lambda n=n: k(n))
             for n in (0, -1, 1.5, "10", True, None, float("nan"), 2**70 + 0.5)]
    cases += [case(f"karras_range={a},{b}", lambda a=a, b=b: k(5, sigma_min=a, sigma_max=b))
              for a, b in ((0, 80), (-1, 80), (1, 0.5), (float("nan"), 80), (0.002, float("inf")), (5, 5))]
    cases += [case(f"karras_rho={r}", lambda r=r: k(5, rho=r)) for r in (0, -1, float("nan"))]
    cases += [case(f"sampler={s!r}", sample(sampler=s)) for s in ("nope", "", None, "EULER", 3)]
    cases += [case(f"sample_steps={n!r}", sample(steps=n)) for n in (0, -2, 2.5)]
    cases += [case(f"request_{kw}", lambda kw=kw: Request(**kw)) for kw in (
        {"n": 0}, {"n": -1}, {"steps": 0}, {"batch_size": 0}, {"guidance": -1.0}, {"sampler": "x"}, {"steps": -3})]
    cases += [case(f"request_{kw}", lambda kw=kw: Request(**kw))
              for kw in ({"guidance": float("nan")}, {"guidance": float("inf")}, {"seed": -1})]
    cases += [case(f"request_{kw}", lambda kw=kw: Request(**kw))
              for kw in ({"steps": 10**9}, {"n": 10**12})]
    cases += [case(f"labels_{lab}", lambda lab=lab: generate.labels_for(Request(label=lab), 3))
              for lab in (-1, 3, 10**20)]
    cases += [case("labels_unconditional", lambda: generate.labels_for(Request(label=0), 0)),
              case("consistency_without_noise",
                   lambda: sampling.sample_consistency(_denoiser, np.zeros(2), [2.0, 1.0, 0.0]))]
    cases += [case(f"shape={s}", sample(shape=s)) for s in ((-1, 1, 4, 4), (1, -3, 4, 4))]
    return _cases("sampler", cases)


@pytest.mark.parametrize("name, call", _sampler_cases())
def test_hostile_sampler_arguments(name, call):
    COUNTS["sampler"] += 1
    with pytest.raises(InputError):
        call()


# --------------------------------------------------------------------------------------- F. runner inputs (eager)


def _eager_cases() -> list:
    rng = np.random.default_rng([SEED, 6])
    cases = []
    for i in range(30):
        kind = ["shape", "dtype", "nonfinite", "label", "t", "object"][i % 6]
        cases.append(pytest.param(kind, int(rng.integers(1 << 30)), id=f"{kind}-{i}"))
    return _cases("eager_inputs", cases)


def _bad_inputs(kind: str, seed: int):
    rng = np.random.default_rng(seed)
    b = int(rng.integers(1, 4))
    x, t, label = np.zeros((b, 1, 8, 8), np.float32), np.zeros(b, np.float32), np.ones(b, np.int64)
    if kind == "shape":
        shape = [b, 1, 8, 8]
        i = int(rng.integers(0, 4))
        shape[i] = [0, 2, 3, 16, 5][int(rng.integers(0, 5))] if i else 0
        x = np.zeros(shape if rng.uniform() < 0.8 else shape[:3], np.float32)
    elif kind == "dtype":
        x = x.astype(rng.choice(["float64", "float16", "int32", "uint8", "complex64", "bool"]))
    elif kind == "nonfinite":
        target = x if rng.uniform() < 0.5 else t
        target.reshape(-1)[int(rng.integers(target.size))] = rng.choice([np.nan, np.inf, -np.inf])
    elif kind == "label":
        label = [np.full(b, int(rng.choice([-1, 4, 2**40]))), np.ones(b, np.float32), np.ones(b + 1, np.int64),
                 np.ones((b, 1), np.int64), np.ones(b, bool)][int(rng.integers(0, 5))]
    elif kind == "t":
        t = [np.zeros(b + 1, np.float32), np.zeros((b, 1), np.float32), np.zeros(b, np.float64),
             np.float32(0.0)][int(rng.integers(0, 4))]
    else:
        x = [[[1, 2], [3]], "x" * b, None, np.array([object()] * b)][int(rng.integers(0, 4))]
    return x, t, label


@pytest.mark.parametrize("kind, seed", _eager_cases())
def test_hostile_eager_runner_inputs(kind, seed):
    runner = EagerRunner(tiny_net(), channels=1, resolution=8, num_classes=3)
    COUNTS["eager_inputs"] += 1
    with pytest.raises(InputError):
        runner(*_bad_inputs(kind, seed))


# --------------------------------------------------------------------------------------------------- G. the CLI

S = ["sample", "--model", "{model}", "--n", "2", "--steps", "2", "--quiet", "--out", "out/o.npy"]
T = ["train", "--config", "{model}/config.json", "--out", "out/run", "--quiet", "--steps", "1", "--batch-size", "2",
     "--threads", "1", "--autocast", "fp32"]
CLI = [
    ("no_verb", []), ("bad_verb", ["launch-rockets"]), ("sample_no_out", ["sample"]),
    ("steps_not_int", [*S, "--steps", "x"]), ("n_float", [*S, "--n", "1e3"]),
    ("guidance_word", [*S, "--guidance", "a"]),
    ("train_precision", [*T, "--autocast", "fp8"]), ("convert_no_backend", ["convert", "--out", "out/c"]),
    ("bench_no_target", ["bench", "--out", "out/b"]), ("eval_no_samples", ["eval"]),
    ("unknown_flag", [*S, "--frobnicate"]), ("info_model_no_value", ["info", "--model"]),
    ("sampler", [*S, "--sampler", "nope"]), ("backend", [*S, "--backend", "tflite"]), ("steps0", [*S, "--steps", "0"]),
    ("steps_neg", [*S, "--steps", "-5"]), ("n0", [*S, "--n", "0"]), ("batch0", [*S, "--batch-size", "0"]),
    ("label_neg", [*S, "--label", "-1"]), ("label_eq_classes", [*S, "--label", "3"]),
    ("label_huge", [*S, "--label", "1" + "0" * 20]), ("out_jpg", [*S[:-1], "out/o.jpg"]),
    ("out_existing_dir", [*S[:-1], "{res}"]), ("model_missing", [*S[:2], "nope", *S[3:]]),
    ("model_truncated", [*S[:2], "{trunc}", *S[3:]]), ("model_pickle", [*S[:2], "{pickled}", *S[3:]]),
    ("model_bad_config", [*S[:2], "{badcfg}", *S[3:]]), ("artifact_traversal", [*S[:2], "{trav}", *S[3:]]),
    ("artifact_flipped", [*S[:2], "{flipped}", *S[3:]]), ("artifact_schema", [*S[:2], "{schema9}", *S[3:]]),
    ("backend_on_model_dir", [*S, "--backend", "openvino"]), ("guidance_neg", [*S, "--guidance", "-1"]),
    pytest.param("threads_neg", [*S, "--threads", "-1"]),
    pytest.param("guidance_nan", [*S, "--guidance", "nan"]),
    pytest.param("guidance_inf", [*S, "--guidance", "inf"]),
    pytest.param("seed_neg", [*S, "--seed", "-1"]),
    pytest.param("device_on_eager", [*S, "--device", "GPU"]),
    pytest.param("steps_huge", [*S, "--steps", "1000000000"]),
    pytest.param("n_huge", [*S, "--n", "100000000000"]),
    ("train_steps0", [*T, "--steps", "0"]), ("train_batch0", [*T, "--batch-size", "0"]),
    ("train_config_missing", ["train", "--config", "nope.json", "--out", "out/run"]),
    ("train_config_corrupt", ["train", "--config", "{badcfg}/config.json", "--out", "out/run"]),
    ("train_config_pickle", ["train", "--config", "{pkcfg}/config.json", "--out", "out/run"]),
    ("train_config_dir", ["train", "--config", "{res}", "--out", "out/run"]),
    ("train_data_missing", [*T, "--data", "nope"]),
    ("train_resume_pickle", [*T[:4], "{run_pickle}", *T[5:]]),
    ("train_resume_traversal", [*T[:4], "{run_traversal}", *T[5:]]),
    pytest.param("train_resume_state_pickle", [*T[:4], "{run_state}", *T[5:]]),
    pytest.param("train_resume_state_list", [*T[:4], "{run_state_list}", *T[5:]]),
    pytest.param("train_lr_nan", [*T, "--lr", "nan"]),
    pytest.param("train_lr_neg", [*T, "--lr", "-1"]),
    pytest.param("train_seed_neg", [*T, "--seed", "-1"]),
    pytest.param("train_seed_huge", [*T, "--seed", str(2**70)]),
    pytest.param("train_threads_neg", [*T, "--threads", "-1"]),
    pytest.param("train_device", [*T, "--device", "cuda:7"]),
    ("eval_missing", ["eval", "--samples", "none.npy"]), ("eval_pickle", ["eval", "--samples", "{res}/evil.npy"]),
    ("eval_object", ["eval", "--samples", "{res}/obj.npy"]),
    ("eval_text", ["eval", "--samples", "{model}/config.json"]),
    ("eval_labels_pickle", ["eval", "--samples", "{res}/ok.npy", "--labels", "{res}/evil.npy"]),
    ("eval_2d", ["eval", "--samples", "{res}/2d.npy"]), ("eval_nan", ["eval", "--samples", "{res}/nan.npy"]),
    ("eval_prompt_digits", ["eval", "--samples", "{res}/ok.npy", "--prompt", "red apple"]),
    ("eval_prompt_and_file", ["eval", "--samples", "{res}/ok.npy", "--prompt", "a", "--prompts", "{res}/ok.npy"]),
    ("eval_prompts_missing", ["eval", "--samples", "{res}/ok.npy", "--prompts", "none.txt"]),
    ("eval_prompts_binary", ["eval", "--samples", "{res}/ok.npy", "--prompts", "{res}/evil.npy"]),
    ("metric_epochs0_emoji", ["train-metric", "--out", "out/m", "--data", "openmoji", "--epochs", "0"]),
    ("convert_batch0", ["convert", "--model", "{model}", "--backend", "openvino", "--out", "out/c", "--batch", "0"]),
    ("convert_precision", ["convert", "--model", "{model}", "--backend", "openvino", "--out", "out/c",
                           "--precision", "int3"]),
    ("convert_backend", ["convert", "--model", "{model}", "--backend", "tflite", "--out", "out/c"]),
    ("convert_out_file", ["convert", "--model", "{model}", "--backend", "openvino", "--out", "{res}/ok.npy"]),
    ("convert_model_missing", ["convert", "--model", "nope", "--backend", "openvino", "--out", "out/c"]),
    ("convert_delegate", ["convert", "--model", "{model}", "--backend", "openvino", "--delegate", "coreml",
                          "--out", "out/c"]),
    ("convert_external_openvino", ["convert", "--model", "{model}", "--backend", "openvino", "--external-weights",
                                   "--out", "out/c"]),
    ("convert_external_coreml_delegate", ["convert", "--model", "{model}", "--backend", "executorch", "--delegate",
                                          "coreml", "--external-weights", "--out", "out/c"]),
    ("convert_attention_openvino", ["convert", "--model", "{model}", "--backend", "openvino", "--attention",
                                    "split_einsum", "--out", "out/c"]),
    ("convert_attention_own_unet", ["convert", "--model", "{model}", "--backend", "coreml", "--attention",
                                    "split_einsum", "--out", "out/c"]),
    ("convert_check_steps_pixel", ["convert", "--model", "{model}", "--backend", "openvino", "--check-steps", "4",
                                   "--out", "out/c"]),
    ("bench_iters0", ["bench", "{model}", "--out", "out/b", "--iters", "0", "--quiet"]),
    ("bench_warmup_neg", ["bench", "{model}", "--out", "out/b", "--warmup", "-1", "--quiet"]),
    ("bench_missing", ["bench", "nope", "--out", "out/b", "--quiet"]),
    ("bench_corrupt_target", ["bench", "{trunc}", "--out", "out/b", "--quiet"]),
    ("info_missing", ["info", "--model", "nope"]), ("info_corrupt", ["info", "--model", "{badcfg}"]),
    ("metric_epochs0", ["train-metric", "--out", "out/m", "--epochs", "0"]),
    ("metric_data", ["train-metric", "--out", "out/m", "--data", "nope"]),
]


def _cli_cases() -> list:
    cases = [c if hasattr(c, "marks") else pytest.param(*c, id=c[0]) for c in CLI]
    return _cases("cli", [pytest.param(*c.values, id=c.values[0], marks=c.marks) for c in cases])


@pytest.fixture(scope="module")
def cli_res(res, tmp_path_factory) -> dict[str, str]:
    """Read-only inputs for the CLI cases (corrupt model dirs, artifacts, runs, arrays)."""
    root = tmp_path_factory.mktemp("cli")
    paths = {"res": str(root), "model": str(res / "model")}
    for name, (src, kind, value) in {"trunc": ("model", "weights", ("truncate", 0.5)),
                                     "pickled": ("model", "weights", ("raw", "pickle")),
                                     "badcfg": ("model", "config", "nan"), "pkcfg": ("model", "config", "pickle"),
                                     "trav": ("art", "artifact", ("sha_name", "../../x")),
                                     "flipped": ("art", "file", None),
                                     "schema9": ("art", "artifact", ("schema_version", 9)),
                                     "run_pickle": ("run", "run", ("tensors:net", "pickle")),
                                     "run_traversal": ("run", "run", ("latest", "../../etc")),
                                     "run_state": ("run", "run", ("state_json", {"raw": "\x80\x04junk"})),
                                     "run_state_list": ("run", "run", ("state_json", {"raw": "[]"}))}.items():
        p = _copy(res / src, root / name)
        if kind == "weights":
            _mutate_weights(p / checkpoint.WEIGHTS_FILE, *value)
        elif kind == "config":
            _mutate_config_text(p / checkpoint.CONFIG_FILE, value)
        elif kind == "artifact":
            _mutate_artifact(p, *value)
        elif kind == "file":
            _flip(p / "model.bin", 0.5, 0)
        else:
            _mutate_run(p, *value)
        paths[name] = str(p)
    np.save(root / "ok.npy", np.zeros((2, 1, 8, 8), np.float32))
    np.save(root / "2d.npy", np.zeros((2, 8, 8), np.float32))
    np.save(root / "nan.npy", np.full((2, 1, 32, 32), np.nan, np.float32))
    np.save(root / "obj.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    (root / "evil.npy").write_bytes(PICKLE)
    return paths


def run_cli(argv: list[str]) -> tuple[object, str]:
    """cli.main in this process, as a user would see it: (exit code or exception, stderr)."""
    err, out = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("default")  # what a user's interpreter shows
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    except BaseException as e:  # noqa: BLE001 - a traceback is exactly what this suite looks for
        code = f"{type(e).__name__}: {e}"
    finally:
        torch.set_num_threads(threads)
    return code, err.getvalue()


@pytest.mark.parametrize("name, argv", _cli_cases())
def test_hostile_cli_arguments(cli_res, res, tmp_path, monkeypatch, name, argv):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.format(**cli_res) for a in argv]
    before = snapshot(tmp_path, res, Path(cli_res["res"]))
    COUNTS["cli"] += 1
    code, stderr = run_cli(argv)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, (code, stderr[-2000:])
    assert lines[0].startswith("edgediff"), lines
    assert_confined(before, snapshot(tmp_path, res, Path(cli_res["res"])), allowed=(work / "out",))


# ------------------------------------------------------------------------------------ diffusers folders (#16)
# Real users' diffusers folders are the most common bad input: every shape edgediff does not read is one line
# saying what it does read, for every verb that takes a model.
DIFFUSERS_VERBS = {
    "convert": ["convert", "--model", "{m}", "--backend", "openvino", "--out", "out/c"],
    "sample": ["sample", "--model", "{m}", "--n", "1", "--steps", "1", "--quiet", "--out", "out/s.npy"],
    "info": ["info", "--model", "{m}"],
    "bench": ["bench", "{m}", "--out", "out/b", "--quiet", "--in-process"],
    "distill": ["distill", "--model", "{m}", "--out", "out/d", "--steps", "1", "--quiet"],
    "prune": ["prune", "--model", "{m}", "--out", "out/p", "--steps", "0", "--quiet"],
}
DIFFUSERS_FOLDERS = ("sd_pipeline", "ldm_pipeline", "dit_pipeline", "index_no_unet_files", "index_not_json",
                     "index_list", "autoencoder", "scheduler_only", "pickle_weights", "truncated_weights",
                     "ve_scheduler", "unknown_prediction", "identity_class_embed", "fourier_time", "non_square",
                     "scheduler_not_json", "empty_dir_with_index")


def _diffusers_cases() -> list:
    cases = [pytest.param(f, v, id=f"{f}-{v}") for f in DIFFUSERS_FOLDERS for v in ("convert", "sample", "info")
             if (f, v) != ("truncated_weights", "info")]  # info reads the configs only, like a model dir's
    cases += [pytest.param(f, v, id=f"{f}-{v}") for f in ("sd_pipeline", "pickle_weights", "unknown_prediction")
              for v in ("bench", "distill")]
    cases += [pytest.param("valid_unet", "prune", id="valid_unet-prune")]  # prune takes edgediff UNets only
    return _cases("diffusers", cases)


@pytest.fixture(scope="module")
def diffusers_folders(tmp_path_factory) -> Path:
    """Each folder of DIFFUSERS_FOLDERS, built from one tiny random-weight UNet2DModel (+ scheduler) and broken."""
    diffusers = pytest.importorskip("diffusers")
    root = tmp_path_factory.mktemp("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    good = root / "good"
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(good)
    shutil.copytree(good / "unet", root / "valid_unet")

    def pipe(name, **index):
        p = root / name
        shutil.copytree(good, p)
        data = json.loads((p / "model_index.json").read_text())
        (p / "model_index.json").write_text(json.dumps({**data, **index}))
        return p

    def edit_json(file: Path, **changes):
        file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))

    pipe("sd_pipeline", _class_name="StableDiffusionPipeline", unet=["diffusers", "UNet2DConditionModel"],
         vae=["diffusers", "AutoencoderKL"], text_encoder=["transformers", "CLIPTextModel"])
    pipe("ldm_pipeline", _class_name="LDMPipeline", vqvae=["diffusers", "VQModel"])
    pipe("dit_pipeline", _class_name="DiTPipeline", unet=None, transformer=["diffusers", "DiTTransformer2DModel"])
    shutil.rmtree(pipe("index_no_unet_files") / "unet")
    (pipe("index_not_json") / "model_index.json").write_text("{not json")
    (pipe("index_list") / "model_index.json").write_text("[]")
    (root / "autoencoder").mkdir()
    (root / "autoencoder" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    shutil.copytree(good / "scheduler", root / "scheduler_only")
    p = shutil.copytree(good / "unet", root / "pickle_weights")
    (p / "diffusion_pytorch_model.safetensors").unlink()
    (p / "diffusion_pytorch_model.bin").write_bytes(PICKLE)
    p = shutil.copytree(good / "unet", root / "truncated_weights")
    w = p / "diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    edit_json(pipe("ve_scheduler", scheduler=["diffusers", "ScoreSdeVeScheduler"]) / "scheduler" /
              "scheduler_config.json", _class_name="ScoreSdeVeScheduler")
    edit_json(pipe("unknown_prediction") / "scheduler" / "scheduler_config.json", prediction_type="flow")
    edit_json(pipe("identity_class_embed") / "unet" / "config.json", class_embed_type="identity")
    edit_json(pipe("fourier_time") / "unet" / "config.json", time_embedding_type="fourier")
    edit_json(pipe("non_square") / "unet" / "config.json", sample_size=[8, 16])
    (pipe("scheduler_not_json") / "scheduler" / "scheduler_config.json").write_text("\x80\x04")
    (root / "empty_dir_with_index").mkdir()
    (root / "empty_dir_with_index" / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    return root


@pytest.mark.parametrize("folder, verb", _diffusers_cases())
def test_hostile_diffusers_folders(diffusers_folders, tmp_path, monkeypatch, folder, verb):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [a.format(m=str(diffusers_folders / folder)) for a in DIFFUSERS_VERBS[verb]]
    before = snapshot(diffusers_folders)
    COUNTS["diffusers"] += 1
    code, stderr = run_cli(argv)
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith("edgediff") or "error" in ln]
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, (code, stderr[-2000:])
    assert lines[0].startswith(f"edgediff {verb}: error: "), lines
    assert any(w in lines[0] for w in ("expected", "expects", "supported", "only")), lines[0]
    assert_confined(before, snapshot(diffusers_folders))
    assert not (work / "out").exists() or not any((work / "out").rglob("*.json")), "a half-written artifact"


# ------------------------------------------------------------------------------------------------- the count


def test_zz_case_count(record_property, capsys):
    """Report how many hostile cases ran (≥ 200 when the whole module runs)."""
    total, expected = sum(COUNTS.values()), sum(EXPECTED.values())
    record_property("hostile_cases", total)
    table = ", ".join(f"{k} {COUNTS[k]}" for k in sorted(EXPECTED))
    with capsys.disabled():
        print(f"\nhostile-input fuzz suite: {total} cases ran ({table})")
    if set(COUNTS) != set(EXPECTED) or total < expected:
        pytest.skip(f"only part of the suite ran ({total} of {expected} cases)")
    assert total >= 200
