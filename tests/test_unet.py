import json

import pytest
import torch

from edgediff.format.configs import UNetConfig
from edgediff.models import checkpoint
from edgediff.models.unet import GroupNorm, UNet, count_params, flops_per_step

SHIPPED = {"mnist-nano": (0.2e6, 0.4e6), "mnist-tiny": (0.8e6, 1.3e6), "mnist-small": (3.0e6, 5.0e6)}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_sizes_and_export(name):
    md = checkpoint.load(name, weights=False)
    lo, hi = SHIPPED[name]
    assert lo <= count_params(md.net) <= hi
    assert flops_per_step(md.net, md.unet) > 0
    c = md.unet
    x = torch.randn(2, c.in_channels, c.resolution, c.resolution)
    t, label = torch.randn(2), torch.tensor([1, c.null_label])
    ep = torch.export.export(md.net, (x, t, label))
    torch.testing.assert_close(ep.module()(x, t, label), md.net(x, t, label))


def test_flops_grow_with_width():
    a, b = UNetConfig(channels=(16, 32), attention_levels=()), UNetConfig(channels=(32, 64), attention_levels=())
    assert flops_per_step(UNet(b), b) > 3 * flops_per_step(UNet(a), a)


def test_decomposed_groupnorm_matches_torch():
    torch.manual_seed(0)
    ref = GroupNorm(8, 32)
    torch.nn.init.normal_(ref.weight)
    torch.nn.init.normal_(ref.bias)
    dec = GroupNorm(8, 32, decomposed=True)
    dec.load_state_dict(ref.state_dict())
    x = torch.randn(3, 32, 8, 8) * 3 + 1
    torch.testing.assert_close(dec(x), ref(x), atol=1e-5, rtol=1e-5)


def test_decomposed_norm_model_is_weight_compatible():
    torch.manual_seed(0)
    cfg = UNetConfig(channels=(16, 32), attention_levels=(1,), time_embed_dim=32)
    a, b = UNet(cfg), UNet(cfg.replace(norm="group_decomposed"))
    torch.nn.init.normal_(a.conv_out.weight, std=0.1)
    b.load_state_dict(a.state_dict())
    x, t, y = torch.randn(2, 1, 32, 32), torch.randn(2), torch.tensor([3, 10])
    torch.testing.assert_close(b(x, t, y), a(x, t, y), atol=1e-4, rtol=1e-4)


def test_label_none_is_the_null_class():
    torch.manual_seed(0)
    cfg = UNetConfig(channels=(16, 32), attention_levels=(), time_embed_dim=32)
    net = UNet(cfg)
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    x, t = torch.randn(2, 1, 32, 32), torch.randn(2)
    torch.testing.assert_close(net(x, t, None), net(x, t, torch.full((2,), cfg.null_label)))
    assert not torch.allclose(net(x, t, None), net(x, t, torch.zeros(2, dtype=torch.long)))


def test_config_round_trip_and_validation():
    cfg = UNetConfig(channels=(8, 16, 24), attention_levels=(1, 2), widths={"mid.0.res": 16})
    assert UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown UNetConfig keys"):
        UNetConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="attention_levels"):
        UNetConfig(channels=(8, 16), attention_levels=(2,))
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(resolution=30, channels=(8, 16, 16))
    with pytest.raises(ValueError, match="norm"):
        UNetConfig(norm="batch")
