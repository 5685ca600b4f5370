"""The published SD-family configs in benchmarks/sd_configs/ build, on the meta device (no memory, a few seconds),
into networks of the published parameter counts (within 1 %; sources in benchmarks/sd_configs/README.md), and the
widths benchmarks/sd_sizes.py divides for its quick runs still build."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

CONFIGS = Path(__file__).resolve().parent.parent / "benchmarks" / "sd_configs"
PUBLISHED = {  # config file: (what is counted, published parameter count)
    "sd15_unet": ("all", 859_520_964),
    "bk_sdm_tiny_unet": ("all", 323_384_964),
    "sd21_base_unet": ("all", 865_910_724),
    "sd15_text_encoder": ("all", 123_060_480),
    "sd21_base_text_encoder": ("all", 340_387_840),
    "sd15_vae": ("decoder", 49_490_179),
    "sd21_base_vae": ("decoder", 49_490_179),
    "taesd": ("decoder", 1_222_531),
}
WHOLE_VAE = 83_653_863  # SD VAE encoder + decoder + quant convs


def config(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def build(name: str, c: dict | None = None):
    """The network a config file describes, on the meta device."""
    c = config(name) if c is None else c
    with torch.device("meta"):
        if "architectures" in c:
            return transformers.CLIPTextModel(transformers.CLIPTextConfig.from_dict(c))
        return getattr(diffusers, c["_class_name"]).from_config(c)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_config_builds_to_the_published_parameter_count(name):
    part, published = PUBLISHED[name]
    net = build(name)
    built = count(net.decoder if part == "decoder" else net)
    assert abs(built - published) <= 0.01 * published, f"{name}: {built:,} built, {published:,} published"


def test_the_sd_vae_is_whole_and_the_2x_text_encoder_is_openclip_h():
    assert count(build("sd15_vae")) == WHOLE_VAE
    text = config("sd21_base_text_encoder")
    assert (text["num_hidden_layers"], text["hidden_size"], text["hidden_act"]) == (23, 1024, "gelu")
    unet = config("sd21_base_unet")
    assert unet["attention_head_dim"] == [5, 10, 20, 20] and unet["use_linear_projection"]
    assert unet["cross_attention_dim"] == 1024
    assert config("sd21_scheduler_v")["prediction_type"] == "v_prediction"


def test_the_ddim_scheduler_is_diffusers_own_conversion_of_the_published_pndm():
    derived = diffusers.DDIMScheduler.from_config(config("sd15_scheduler"))
    stored = config("sd15_scheduler_ddim")
    assert {k: v for k, v in derived.config.items() if not k.startswith("_")} == \
        {k: v for k, v in stored.items() if not k.startswith("_")}


@pytest.mark.parametrize("scale", [8, 16])
def test_divided_widths_still_build(scale, monkeypatch):
    monkeypatch.syspath_prepend(str(CONFIGS.parent))
    sdb = pytest.importorskip("sd_sizes_build")
    for unet, text, vae, _ in sdb.SIZES.values():
        u = build(unet, sdb.scaled_unet(config(unet), scale, 16))
        t = build(text, sdb.scaled_text(config(text), scale))
        assert u.config.cross_attention_dim == t.config.hidden_size
        build(vae, sdb.scaled_vae(config(vae), scale, 128))
    build("taesd", sdb.scaled_taesd(config("taesd"), scale))
    sys.modules.pop("sd_sizes_build", None)
