"""`edgediff train` under `torchrun --nproc_per_node 2` on CPU (gloo), compared with one process."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edgediff import cli
from edgediff.errors import InputError
from edgediff.format.configs import UNetConfig
from edgediff.models import checkpoint
from edgediff.models.unet import UNet
from edgediff.training import distributed
from edgediff.training.loop import Batch

CFG = UNetConfig(channels=(8, 16), attention_levels=(1,), time_embed_dim=16, groups=4, num_classes=10)
TRAINING = {"batch_size": 8, "lr": 3e-3, "warmup_steps": 1, "ema_decay": 0.9, "label_dropout": 0.25,
            "precision": "fp32", "checkpoint_every": 2, "log_every": 1, "threads": 1, "data": "mnist5k"}

# Runs `edgediff train` exactly as the CLI does, with two spies: which files this rank wrote, and the weights this
# rank holds when training ends (the net it was given and the EMA copy the loop made).
WORKER = r'''
import json, os, sys
from pathlib import Path
from safetensors.torch import save_file
from edgediff.models import checkpoint
from edgediff import cli
from edgediff.training import loop as train

rank, dump = os.environ["RANK"], Path(sys.argv[1])
writes, seen = [], {}
for name in ("write_tensors", "write_text"):
    def spy(file, *a, _orig=getattr(checkpoint, name), **k):
        writes.append(str(file))
        return _orig(file, *a, **k)
    setattr(checkpoint, name, spy)
real_run = train.run

def run(net, cfg, out, *, loss, **kw):
    def spy_loss(b):
        seen.update(ema=b.ema, wrapper=type(b.net).__name__, rows=len(b.x0))
        return loss(b)
    result = real_run(net, cfg, out, loss=spy_loss, **kw)
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in seen["ema"].state_dict().items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(dump / f"rank{rank}.safetensors"))
    return result

train.run = run
code = cli.main(sys.argv[2:])
info = {"writes": writes, "wrapper": seen.get("wrapper"), "rows": seen.get("rows")}
(dump / f"rank{rank}.json").write_text(json.dumps(info))
sys.exit(code)
'''


def _argv(config, out, steps):
    return ["train", "--config", str(config), "--out", str(out), "--steps", str(steps), "--quiet"]


def _torchrun(tmp_path, config, out, steps, name):
    dump = tmp_path / name
    dump.mkdir()
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
           str(dump), *_argv(config, out, steps)]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("trained model written to") == 1  # rank 0 only
    ranks = [load_file(str(dump / f"rank{r}.safetensors")) for r in range(2)]
    return ranks, [json.loads((dump / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """2 ranks × 4 rows: 2 steps, then resumed to 4 steps by 2 ranks ("ddp") and by 1 process ("mixed");
    and 1 process × 8 rows straight to 4 steps ("single")."""
    tmp = tmp_path_factory.mktemp("ddp")
    config = checkpoint.save(tmp / "config", UNet(CFG), {"name": "ddp-test", "training": TRAINING})
    first = _torchrun(tmp, config, tmp / "ddp", 2, "first")
    shutil.copytree(tmp / "ddp", tmp / "mixed")
    resumed = _torchrun(tmp, config, tmp / "ddp", 4, "resumed")
    env = {k: os.environ.pop(k) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK") if k in os.environ}
    threads = torch.get_num_threads()  # the config's threads=1 applies to this process too
    try:
        assert cli.main(_argv(config, tmp / "single", 4)) == 0
        assert cli.main(_argv(config, tmp / "mixed", 4)) == 0
    finally:
        os.environ.update(env)
        torch.set_num_threads(threads)
    return {"first": first, "resumed": resumed, **{k: tmp / k for k in ("ddp", "single", "mixed")}}


@pytest.mark.parametrize("launch", ["first", "resumed"])
def test_ranks_hold_identical_weights_and_only_rank0_writes(runs, launch):
    (rank0, rank1), (info0, info1) = runs[launch]
    assert rank0.keys() == rank1.keys() and any(k.startswith("ema.") for k in rank0)
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k
    assert info0["wrapper"] == info1["wrapper"] == "DistributedDataParallel"
    assert info0["rows"] == info1["rows"] == TRAINING["batch_size"] // 2
    assert info1["writes"] == [] and info0["writes"]
    assert all(str(runs["ddp"]) in f for f in info0["writes"])


@pytest.mark.parametrize("run", ["ddp", "mixed"])
def test_two_ranks_with_half_batches_match_one_process_and_resume(runs, run):
    """2 ranks × B/2 = 1 process × B (to float rounding), also when resumed with another number of processes."""
    ddp, single = runs[run], runs["single"]
    assert (ddp / "latest").read_text().strip() == "ckpt-00000004"
    state = json.loads((ddp / "ckpt-00000004" / "state.json").read_text())
    assert [s for s, _ in state["losses"]] == [1, 2, 3, 4]  # resumed after step 2, logged every step
    for f in ("weights.safetensors", "ckpt-00000004/net.safetensors", "ckpt-00000004/optim.safetensors"):
        a, b = load_file(str(ddp / f)), load_file(str(single / f))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=f"{f}: {k}")
    ref = json.loads((single / "ckpt-00000004" / "state.json").read_text())["losses"]
    np.testing.assert_allclose(np.array(state["losses"]), np.array(ref), rtol=1e-4)


def test_every_rank_ends_with_the_weights_rank0_saved(runs):
    (rank0, rank1), _ = runs["resumed"]
    for part in ("net", "ema"):
        for k, v in load_file(str(runs["ddp"] / "ckpt-00000004" / f"{part}.safetensors")).items():
            assert torch.equal(rank0[f"{part}.{k}"], v) and torch.equal(rank1[f"{part}.{k}"], v), k


def test_per_sample_randoms_do_not_depend_on_the_number_of_ranks():
    def draws(rows, b):
        gen = torch.Generator().manual_seed(7)
        batch = Batch(None, None, torch.zeros(b, 1, 2, 2), torch.zeros(b), gen, 0, rows, 8)
        return batch.randn(3), batch.rand(), batch.randint(5, 2)

    whole = draws(slice(None), 8)
    halves = [draws(slice(r, None, 2), 4) for r in range(2)]
    for i, full in enumerate(whole):
        torch.testing.assert_close(halves[0][i], full[0::2])
        torch.testing.assert_close(halves[1][i], full[1::2])


def test_global_batch_must_split_evenly_over_ranks(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.local_batch(8, distributed.Context(rank=1, world=2)) == 4
    with pytest.raises(InputError, match="divisible"):
        distributed.local_batch(7, distributed.Context(rank=0, world=2))
    assert distributed.setup("cpu") == distributed.Context()  # no torchrun environment: single process
