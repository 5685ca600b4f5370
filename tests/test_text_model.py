"""The project's own text model (#18): a tiny CLIP-tokenized text encoder and the cross-attention UNet it conditions.

Real CLIP BPE ids in, a compact vocabulary inside; the UNet reads the encoder's hidden states through the same
label slot the host sampler fills with a diffusers text encoder's output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgediff.errors import InputError
from edgediff.format.configs import UNetConfig
from edgediff.format.latent_configs import TextEncoderConfig
from edgediff.models import checkpoint
from edgediff.models.text_encoder import TinyTextEncoder
from tests.conftest import random_unet

TEXT = TextEncoderConfig(vocab_size=64, max_length=8, width=32, layers=2, heads=4)
UNET = UNetConfig(resolution=16, in_channels=4, out_channels=4, channels=(16, 32), attention_levels=(1,),
                  time_embed_dim=32, num_classes=0, context_dim=32)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    pytest.importorskip("transformers")
    from edgediff.format.clip_tokenizer import load_tokenizer, write_clip_tokenizer

    return load_tokenizer(write_clip_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer", max_length=8))


def encoder(tokenizer, captions=("red apple", "green apple", "grinning face")) -> TinyTextEncoder:
    torch.manual_seed(0)
    enc = TinyTextEncoder(TEXT).eval()
    ids = sorted({i for c in captions for i in tokenizer(c)["input_ids"]})
    enc.set_vocabulary(ids)
    return enc


def ids_of(tokenizer, *prompts) -> torch.Tensor:
    return torch.tensor(tokenizer(list(prompts), padding="max_length", max_length=8, truncation=True)["input_ids"])


def test_real_clip_ids_map_to_the_compact_vocabulary_and_unknown_tokens_share_row_0(tokenizer):
    enc = encoder(tokenizer)
    ids = ids_of(tokenizer, "red apple", "purple dinosaur")
    compact = enc.compact(ids)
    assert compact.max() < TEXT.vocab_size and (compact[0] > 0).all()  # every token of a training caption is known
    assert (compact[1, 1:3] == 0).all()  # "purple", "dinosaur": not in the captions
    hidden = enc(ids)
    assert hidden.shape == (2, 8, 32) and torch.isfinite(hidden).all()
    with pytest.raises(ValueError, match="do not fit vocab_size 64"):
        enc.set_vocabulary(range(100))


def test_the_encoder_is_causal_as_clip_is(tokenizer):
    enc = encoder(tokenizer)
    a, b = enc(ids_of(tokenizer, "red apple")), enc(ids_of(tokenizer, "red face"))
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-6)  # BOS, "red": the later word cannot reach them
    assert not torch.allclose(a[:, 2:], b[:, 2:], atol=1e-3)


def test_the_cross_attention_unet_reads_the_text(tokenizer):
    enc, net = encoder(tokenizer), random_unet(UNET).eval()
    x, t = torch.randn(2, 4, 16, 16), torch.zeros(2)
    with torch.no_grad():
        ctx = enc(ids_of(tokenizer, "red apple", "grinning face"))
        same = net(x, t, ctx[:1].expand(2, -1, -1))
        out = net(x, t, ctx)
    assert out.shape == x.shape and torch.allclose(out[0], same[0], atol=1e-6)
    assert (out[1] - same[1]).abs().max() > 1e-4  # another prompt, another prediction
    assert sum(name.endswith("cross.kv.weight") for name, _ in net.named_parameters()) == 4  # down.1, mid, up.1 ×2
    with pytest.raises(ValueError, match=r"context \[B, L, 32\]"):
        net(x, t, torch.zeros(2, dtype=torch.long))


def test_a_text_unet_round_trips_through_a_model_directory(tmp_path):
    net = random_unet(UNET)
    loaded = checkpoint.load(checkpoint.save(tmp_path / "m", net, {"name": "text-unet"})).net
    x, ctx = torch.randn(1, 4, 16, 16), torch.randn(1, 8, 32)
    assert loaded.config.context_dim == 32
    with torch.no_grad():
        assert torch.equal(loaded(x, torch.zeros(1), ctx), net(x, torch.zeros(1), ctx))


@pytest.mark.parametrize("bad, match", [
    ({"heads": 5}, "divisible by heads"), ({"max_length": 100}, "max_length 100 must be in 3..77"),
    ({"vocab_size": 0}, "must be positive"), ({"vocab_size": 60000}, "exceeds the tokenizer's 49408"),
])
def test_bad_text_encoder_configs_say_what_is_expected(bad, match):
    with pytest.raises(InputError, match=match):
        TextEncoderConfig(**{**TEXT.to_dict(), **bad})
    with pytest.raises(InputError, match="unknown TextEncoderConfig keys"):
        TextEncoderConfig.from_dict({"depth": 3})
    with pytest.raises(InputError, match="a text model .* has no classes"):
        UNET.replace(num_classes=10)


def test_both_networks_export_with_static_shapes(tokenizer):
    """torch.export (what every converter starts from) takes both; the exported programs equal eager."""
    enc, net = encoder(tokenizer), random_unet(UNET).eval()
    ids = ids_of(tokenizer, "red apple").to(torch.int32)
    x, t = torch.randn(1, 4, 16, 16), torch.zeros(1)
    with torch.no_grad():
        ctx = enc(ids)
        ep_enc = torch.export.export(enc, (ids,))
        ep_unet = torch.export.export(net, (x, t, ctx))
        np.testing.assert_allclose(ep_enc.module()(ids).numpy(), ctx.numpy(), atol=1e-6)
        np.testing.assert_allclose(ep_unet.module()(x, t, ctx).numpy(), net(x, t, ctx).numpy(), atol=1e-6)
