"""`edgediff train` killed with SIGKILL at a random moment resumes to the same result as a run never interrupted.

Every random draw of training is a pure function of (seed, step), so the resumed run must reach the same step count,
the same logged losses and the same EMA weights (up to float noise), and leave no partial file behind. The kill
moment is drawn at random each run; set EDGEDIFF_KILL_SEED to replay one (the seed is in every failure message).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from edgediff.models import checkpoint

STEPS, EVERY = 120, 10
UNET = {"resolution": 16, "in_channels": 1, "out_channels": 1, "channels": [16, 32], "attention_levels": [],
        "time_embed_dim": 32, "groups": 4, "num_classes": 3}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("kill")
    rng = np.random.default_rng(0)
    for c in "abc":
        (root / "imgs" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(root / "imgs" / c / f"{i}.png")
    training = {"steps": STEPS, "batch_size": 8, "precision": "fp32", "data": str(root / "imgs"), "threads": 1,
                "checkpoint_every": EVERY, "log_every": 1, "lr": 1e-3, "warmup_steps": 5, "seed": 3}
    cfg = {"format": "edgediff.model", "format_version": 1, "name": "kill-test", "unet": UNET, "training": training}
    (root / "config.json").write_text(json.dumps(cfg))
    return root / "config.json"


def _train_cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "edgediff", "train", "--config", str(config), "--out", str(out), "--quiet"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def text_config(tmp_path_factory) -> Path:
    """The shipped text-to-image recipe (openmoji-t2i) at a tiny size: the same loop behind caption dropout."""
    pytest.importorskip("resvg_py")
    pytest.importorskip("transformers")
    from tests.text_recipe import tiny_autoencoder, tiny_recipe

    root = tmp_path_factory.mktemp("kill-text")
    return tiny_recipe(root / "config.json", tiny_autoencoder(root / "ae"), STEPS, checkpoint_every=EVERY,
                       log_every=1, seed=3)


_STRAIGHT: dict[Path, Path] = {}


def _uninterrupted(config: Path) -> Path:
    if config not in _STRAIGHT:
        out = config.parent / "straight"
        subprocess.run(_train_cmd(config, out), env=_env(), check=True, capture_output=True, timeout=600)
        _STRAIGHT[config] = out
    return _STRAIGHT[config]


def _weights(out: Path) -> dict:
    from edgediff.models import text_model

    meta = json.loads((out / "config.json").read_text())
    net = text_model.load(out)[0] if meta["format"] == "edgediff.text_model" else checkpoint.load(out).net
    return net.state_dict()


def _latest_step(out: Path) -> int:
    try:
        name = (out / "latest").read_text().strip()
    except OSError:
        return -1
    return int(name.split("-")[1]) if name.startswith("ckpt-") else -1


def _partial_files(out: Path) -> list[str]:
    """Temp files and dirs under `out` (os.walk: a training process may be renaming them right now)."""
    found = []
    for root, dirs, files in os.walk(out):
        found += [os.path.relpath(os.path.join(root, n), out) for n in dirs + files
                  if n.startswith(".") or n.endswith((".tmp", ".old"))]
    return sorted(found)


def _kill_during(config: Path, out: Path, rng: np.random.Generator, *, mid_write: bool) -> int:
    """Start training, SIGKILL it after a random checkpoint (or the moment a temp file appears); return that step."""
    target = int(rng.integers(1, STEPS // EVERY - 2)) * EVERY  # leave the last checkpoints to the resumed run
    proc = subprocess.Popen(_train_cmd(config, out), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while _latest_step(out) < target and proc.poll() is None:
            time.sleep(0.005)
        if mid_write:
            deadline = time.monotonic() + 30
            while not _partial_files(out) and proc.poll() is None and time.monotonic() < deadline:
                pass
        else:
            time.sleep(float(rng.uniform(0, 0.4)))
        step = _latest_step(out)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"training ended before the kill (rc {proc.returncode}): " \
                                               f"{proc.stderr.read().decode()[-2000:]}"
    return step


def _state(out: Path) -> dict:
    latest = (out / "latest").read_text().strip()
    return json.loads((out / latest / "state.json").read_text())


@pytest.mark.parametrize(("recipe", "mid_write"), [("config", False), ("config", True), ("text_config", False)],
                         ids=["random-step", "mid-write", "text-to-image-recipe"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(recipe, mid_write, request, tmp_path):
    config = request.getfixturevalue(recipe)
    uninterrupted = _uninterrupted(config)
    seed = int(os.environ.get("EDGEDIFF_KILL_SEED", time.time_ns() % 2**32))
    rng = np.random.default_rng(seed)
    out = tmp_path / "run"
    killed_at = _kill_during(config, out, rng, mid_write=mid_write)
    why = f"(EDGEDIFF_KILL_SEED={seed}, killed after checkpoint {killed_at}, left {_partial_files(out)})"
    assert 0 < _latest_step(out) < STEPS, why
    checkpoint.read_tensors(out / (out / "latest").read_text().strip() / "ema.safetensors")  # latest is complete

    done = subprocess.run(_train_cmd(config, out), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{why}\n{done.stderr[-3000:]}"
    a, b = _state(uninterrupted), _state(out)
    assert b["step"] == a["step"] == STEPS, why
    assert json.loads((out / "config.json").read_text())["training_state"]["step"] == STEPS, why
    assert [s for s, _ in b["losses"]] == list(range(1, STEPS + 1)), why
    np.testing.assert_allclose([v for _, v in b["losses"]], [v for _, v in a["losses"]], rtol=1e-4, atol=1e-6,
                               err_msg=why)
    want, got = _weights(uninterrupted), _weights(out)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6, msg=lambda m, k=k: f"{k}: {m} {why}")
    assert _partial_files(out) == [], why
    assert sorted(p.name for p in out.glob("ckpt-*")) == [f"ckpt-{STEPS:08d}"], why


def test_a_kill_between_the_checkpoint_and_the_model_export_is_repaired_on_resume(config, tmp_path):
    """Killed after `latest` moved to the final checkpoint but before config.json/weights were exported."""
    import copy
    import shutil

    from edgediff.training import fit as train

    meta = json.loads(config.read_text())
    first = {**meta, "training": {**meta["training"], "steps": STEPS - EVERY}}
    out, threads = tmp_path / "run", torch.get_num_threads()
    try:
        train.fit_model_config(first, out, progress=False)
        saved = {n: (out / n).read_bytes() for n in (checkpoint.CONFIG_FILE, checkpoint.WEIGHTS_FILE)}
        train.fit_model_config(copy.deepcopy(meta), out, progress=False)
        for name, data in saved.items():  # the export of the final step never happened
            (out / name).write_bytes(data)
        shutil.copy(out / checkpoint.WEIGHTS_FILE, out / f".{checkpoint.WEIGHTS_FILE}.999999999-0123abcd.tmp")
        train.fit_model_config(copy.deepcopy(meta), out, progress=False)
    finally:
        torch.set_num_threads(threads)
    exported = json.loads((out / checkpoint.CONFIG_FILE).read_text())["training_state"]["step"]
    assert exported == STEPS, f"the resumed run left the export at step {exported}"
    assert not _partial_files(out)
