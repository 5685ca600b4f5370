import json

import numpy as np
import pytest
import torch

from edgediff.errors import InputError
from edgediff.format.configs import TrainConfig, UNetConfig
from edgediff.format.precond import Preconditioning
from edgediff.models import checkpoint
from edgediff.models.unet import UNet
from edgediff.training.data import ImageData, load
from edgediff.training.loop import Batch, batch_indices, edm, fit, run

CFG = UNetConfig(channels=(8, 16), attention_levels=(1,), time_embed_dim=16, groups=4, num_classes=10)


@pytest.fixture(scope="module")
def tiny_data():
    return load("mnist5k").subset(np.arange(0, 5000, 125))  # 40 real digits, 4 per class


def _train(out, data, steps, **kw):
    cfg = TrainConfig(steps=steps, batch_size=8, precision="fp32", checkpoint_every=2, log_every=1, **kw)
    return fit(CFG, cfg, out, data=data, progress=False)


def test_training_lowers_the_loss_and_writes_a_model_dir(tmp_path, tiny_data):
    out = _train(tmp_path / "run", tiny_data, 30, lr=3e-3, warmup_steps=1)
    md = checkpoint.load(out)
    assert md.unet == CFG
    latest = (out / "latest").read_text().strip()
    state = json.loads((out / latest / "state.json").read_text())
    losses = [loss for _, loss in state["losses"]]
    assert state["step"] == 30 and np.mean(losses[-5:]) < np.mean(losses[:5])
    assert sorted(p.name for p in out.glob("ckpt-*")) == [latest]  # old checkpoints pruned
    assert not list(out.glob(".*tmp*"))


def test_resume_matches_an_uninterrupted_run(tmp_path, tiny_data):
    straight = checkpoint.load(_train(tmp_path / "a", tiny_data, 6))
    _train(tmp_path / "b", tiny_data, 4)
    resumed = checkpoint.load(_train(tmp_path / "b", tiny_data, 6))
    for (k, a), (_, b) in zip(straight.net.state_dict().items(), resumed.net.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=k, atol=1e-6, rtol=1e-5)


def test_batches_cover_each_epoch_once():
    seen = np.concatenate([batch_indices(s, 40, 8, seed=1) for s in range(5)])
    assert sorted(seen.tolist()) == list(range(40))
    assert not np.array_equal(batch_indices(5, 40, 8, seed=1), batch_indices(0, 40, 8, seed=1))
    both = np.concatenate([batch_indices(2, 40, 8, seed=1, rank=r, world=2) for r in range(2)])
    assert sorted(both.tolist()) == sorted(batch_indices(2, 40, 8, seed=1).tolist())


def test_bad_training_input(tmp_path, tiny_data):
    with pytest.raises(InputError, match="precision"):
        TrainConfig(precision="fp8")
    wrong = ImageData(tiny_data.images[:, :, :16, :16], tiny_data.labels, tiny_data.classes)
    with pytest.raises(InputError, match="expects"):
        _train(tmp_path / "c", wrong, 2)


def test_run_trains_a_given_net_with_a_custom_loss(tmp_path, tiny_data):
    """The generic loop behind fit, pruning recovery and distillation: a pruned-width net, any LossFn."""
    pruned = CFG.replace(widths={"down.0.0.res": 4, "mid.0.attn": 8})
    net, seen = UNet(pruned), []
    cfg = TrainConfig(steps=3, batch_size=8, precision="fp32", checkpoint_every=3, label_dropout=0.5, lr=1e-2)
    edm_loss = edm(Preconditioning(), cfg)

    def loss(b: Batch) -> torch.Tensor:
        seen.append((b.step, b.net is net, b.x0.shape, b.rows, b.size, b.label.clone()))
        assert not any(p.requires_grad for p in b.ema.parameters())
        return edm_loss(b)

    out = run(net, cfg, tmp_path / "r", data=tiny_data, loss=loss, meta={"name": "r", "x": 1}, progress=False,
              ema_decay=0.0)
    assert [s[:5] for s in seen] == [(i, True, (8, 1, 32, 32), slice(None), 8) for i in range(3)]
    assert any((s[5] == CFG.null_label).any() for s in seen)  # class dropout
    md = checkpoint.load(out)
    assert md.unet.widths == pruned.widths and md.meta["x"] == 1
    for k, v in net.state_dict().items():  # ema_decay=0: the EMA is the net itself
        torch.testing.assert_close(md.net.state_dict()[k], v, msg=k)


def test_learning_rate_warms_up_holds_and_decays_to_zero():
    from edgediff.training.loop import learning_rate

    cfg = TrainConfig(steps=100, lr=1e-3, warmup_steps=10, decay_steps=40)
    lrs = [learning_rate(cfg, s) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up
    assert lrs[10:60] == [pytest.approx(1e-3)] * 50  # stable
    assert lrs[60] == pytest.approx(1e-3) and lrs[80] == pytest.approx(5e-4) and lrs[99] == pytest.approx(2.5e-5)
    assert all(a >= b for a, b in zip(lrs[60:-1], lrs[61:], strict=True))  # decays monotonically towards 0
    assert [learning_rate(TrainConfig(steps=100, warmup_steps=10), s) for s in (50, 99)] == [1e-3, 1e-3]  # default
    with pytest.raises(InputError, match="decay_steps"):
        TrainConfig(decay_steps=-1)
