"""Structural pruning: a physically smaller UNet whose config rebuilds it exactly, and resumable recovery."""

from __future__ import annotations

import pytest
import torch

from edgediff.errors import InputError
from edgediff.format.configs import UNetConfig
from edgediff.models import checkpoint
from edgediff.models.unet import count_params, flops_per_step
from edgediff.training import prune
from tests.conftest import random_unet

CFG = UNetConfig(channels=(16, 32, 32), attention_levels=(2,), time_embed_dim=32, num_classes=10)


@pytest.fixture(scope="module")
def net():
    return random_unet(CFG).eval()


def test_half_the_channels_is_a_smaller_unet_that_rebuilds_from_its_config(net, tmp_path):
    pytest.importorskip("torch_pruning")
    small = prune.prune(net, prune.PruneConfig(ratio=0.5))
    assert small.config.channels == (8, 16, 16)
    assert count_params(small) < 0.4 * count_params(net)
    assert flops_per_step(small, small.config) < 0.6 * flops_per_step(net, CFG)
    for m in small.modules():  # every pruned width stays a multiple of round_to
        if isinstance(m, torch.nn.Conv2d) and m is not small.conv_out and m is not small.conv_in:
            assert m.out_channels % 8 == 0 and m.in_channels % 8 == 0
    checkpoint.save(tmp_path / "p", small, {"name": "p"})
    again = checkpoint.load(tmp_path / "p").net
    x, t, label = torch.randn(2, 1, 32, 32), torch.tensor([0.1, -0.5]), torch.tensor([3, 10])
    with torch.no_grad():
        torch.testing.assert_close(again(x, t, label), small.eval()(x, t, label))
    torch.export.export(again, (x, t, label))  # converters start from torch.export


def test_groupnorm_groups_keep_their_members(net):
    """The same number of channels leaves every GroupNorm group, so no channel changes group."""
    pytest.importorskip("torch_pruning")
    score = torch.tensor([5.0, 1.0, 4.0, 3.0, 0.5, 9.0, 8.0, 0.1])
    drop = prune._drop(score, keep=4, groups=2)  # groups [0..3] and [4..7]: two from each
    assert sorted(drop) == [1, 3, 4, 7]


def test_taylor_importance_needs_gradients(net):
    pytest.importorskip("torch_pruning")
    with pytest.raises(InputError, match="grads_fn"):
        prune.prune(net, prune.PruneConfig(importance="taylor"))

    def grads(m):
        m(torch.randn(2, 1, 32, 32), torch.zeros(2), torch.zeros(2, dtype=torch.long)).square().mean().backward()

    small = prune.prune(net, prune.PruneConfig(importance="taylor"), grads_fn=grads)
    assert small.config.channels == (8, 16, 16)


@pytest.mark.parametrize("kw", [{"ratio": 0.0}, {"ratio": 1.0}, {"importance": "random"}, {"round_to": 0}])
def test_bad_prune_config(kw):
    with pytest.raises(InputError):
        prune.PruneConfig(**kw)


def test_recovery_is_resumable_and_records_the_pruning(small_model_dir, tmp_path):
    pytest.importorskip("torch_pruning")
    kw = dict(prune_config=prune.PruneConfig(ratio=0.5), lr=1e-3, progress=False, batch_size=8, threads=1,
              precision="fp32")
    out = prune.recover(small_model_dir, tmp_path / "p", steps=2, **kw)
    prune.recover(small_model_dir, out, steps=4, **kw)  # resumes from step 2
    straight = prune.recover(small_model_dir, tmp_path / "q", steps=4, **kw)
    a, b = checkpoint.load(out), checkpoint.load(straight)
    assert a.meta["training_state"]["step"] == 4
    assert a.meta["pruning"]["flops_per_step"][1] < a.meta["pruning"]["flops_per_step"][0]
    for k, v in a.net.state_dict().items():
        torch.testing.assert_close(v, b.net.state_dict()[k])
