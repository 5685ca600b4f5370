"""The text model's recipe (#18): one `edgediff train` command trains text encoder + cross-attention UNet on the
autoencoder's emoji latents, resumes where it stopped, and the result samples prompt → image eagerly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgediff.format.latent_configs import AutoencoderConfig
from edgediff.format.model_dir import AUTOENCODER_FORMAT
from edgediff.models import checkpoint
from edgediff.models.autoencoder import TinyAutoencoder

RECIPE = Path(__file__).resolve().parents[1] / "mobile_models" / "openmoji-t2i" / "config.json"
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    """A random 16×16 autoencoder (latents 4×8×8): the recipe only needs its encoder and scaling factor."""
    pytest.importorskip("resvg_py")
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = AutoencoderConfig(resolution=16, channels=(8, 16), decoder_channels=(16, 8), scaling_factor=2.0)
    return checkpoint.save(tmp_path_factory.mktemp("ae") / "ae", TinyAutoencoder(cfg),
                           {"format": AUTOENCODER_FORMAT, "name": "tiny-ae"})


def _recipe(tmp_path, autoencoder, steps: int) -> Path:
    meta = json.loads(RECIPE.read_text())
    meta["autoencoder"] = str(autoencoder)
    meta["text_model"]["text_encoder"].update(width=16, layers=1, heads=2)
    meta["text_model"]["unet"].update(resolution=8, channels=[16, 32], attention_levels=[1], time_embed_dim=32,
                                      context_dim=16, groups=8)
    meta["training"].update(steps=steps, batch_size=8, checkpoint_every=10, log_every=10, warmup_steps=5,
                            precision="fp32", threads=1)
    path = tmp_path / f"t2i-{steps}.json"
    path.write_text(json.dumps(meta))
    return path


def _train(config, out, *flags):
    return subprocess.run([sys.executable, "-m", "edgediff.cli", "train", "--config", str(config), "--out", str(out),
                           *(flags or ["--quiet"])], capture_output=True, text=True, timeout=600)


def test_one_command_trains_resumes_and_samples_prompt_to_image(tmp_path, autoencoder):
    from edgediff.models import text_model

    out = tmp_path / "t2i"
    res = _train(_recipe(tmp_path, autoencoder, 20), out)
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "config.json").read_text())
    assert meta["format"] == "edgediff.text_model" and meta["training_state"]["step"] == 20
    assert meta["training"]["label_dropout"] > 0 and "OpenMoji" in meta["attribution"]
    assert (out / "vae" / "weights.safetensors").is_file()  # the autoencoder travels with the model

    res = _train(_recipe(tmp_path, autoencoder, 30), out, "--threads", "1")  # more steps: resumes from 20
    assert res.returncode == 0 and "20/30" in res.stderr, res.stderr
    fresh = tmp_path / "fresh"
    assert _train(_recipe(tmp_path, autoencoder, 30), fresh).returncode == 0  # the same 30 steps, no stop
    a, b = text_model.load(out)[0], text_model.load(fresh)[0]
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), name
    assert int(a.text_encoder.token_map.max()) > 100  # the captions' tokens are in the compact vocabulary

    pipe = text_model.eager_pipeline(out)
    apple = pipe.generate(prompt="red apple", n=2, seed=0, steps=4)
    assert apple.shape == (2, 3, 16, 16) and np.isfinite(apple).all()
    assert np.array_equal(apple, pipe.generate(prompt="red apple", n=2, seed=0, steps=4))  # seeded
    face = pipe.generate(prompt="grinning face", n=2, seed=0, steps=4)
    assert np.abs(face - apple).max() > 1e-4  # the prompt reaches the image
    unguided = pipe.generate(prompt="red apple", n=2, seed=0, steps=4, guidance=1.0)
    assert np.abs(unguided - apple).max() > 1e-5  # guidance 3 (the default) mixes in the "" branch

    png = tmp_path / "apple.png"  # the CLI takes the directory as it takes a diffusers folder
    res = subprocess.run([sys.executable, "-m", "edgediff.cli", "sample", "--model", str(out), "--prompt",
                          "red apple", "--n", "4", "--steps", "4", "--out", str(png), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and png.stat().st_size > 0, res.stderr


def test_a_config_the_recipe_cannot_train_is_one_line_with_nothing_written(tmp_path, autoencoder):
    meta = json.loads(_recipe(tmp_path, autoencoder, 5).read_text())
    meta["text_model"]["unet"]["context_dim"] = 24  # ≠ the text encoder's width
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(meta))
    res = _train(bad, tmp_path / "out")
    assert res.returncode != 0 and "must equal text_encoder.width 16" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    meta["text_model"]["unet"]["context_dim"] = 16
    meta["text_model"]["unet"]["resolution"] = 16  # the autoencoder's latents are 8×8
    bad.write_text(json.dumps(meta))
    res = _train(bad, tmp_path / "out")
    assert res.returncode != 0 and "the autoencoder's latents are [4, 8, 8]" in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()
