"""The tiny autoencoder: shapes, one training command on the emoji set, measured scaling factor and PSNR, resume."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgediff.errors import InputError
from edgediff.format.latent_configs import AutoencoderConfig
from edgediff.models.autoencoder import TinyAutoencoder

RECIPE = "mobile_models/openmoji-ae/config.json"


def test_the_factor_and_latent_shape_follow_the_stages():
    cfg = AutoencoderConfig(resolution=64, channels=(8, 16, 16), decoder_channels=(16, 8, 8), latent_channels=4)
    net = TinyAutoencoder(cfg).eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        z = net.encode(x)
        assert tuple(z.shape[1:]) == cfg.latent_shape == (4, 16, 16) and cfg.factor == 4
        assert net.decode(z).shape == x.shape
        recon, z2 = net(x)
        assert torch.equal(z, z2) and torch.equal(recon, net.decode(z))


@pytest.mark.parametrize("bad, fragment", [
    ({"channels": (8, 16), "decoder_channels": (16,)}, "same number"),
    ({"resolution": 30}, "divisible by 4"),
    ({"upsample": "cubic"}, "upsample"),
    ({"scaling_factor": 0.0}, "scaling_factor"),
])
def test_a_bad_autoencoder_config_is_refused_naming_the_field(bad, fragment):
    with pytest.raises(InputError, match=fragment):
        AutoencoderConfig(**{"channels": (8, 16, 16), "decoder_channels": (16, 8, 8), **bad})


def _tiny_recipe(tmp_path, steps, **training):
    meta = json.loads(open(RECIPE).read())
    meta["autoencoder"].update(resolution=16, channels=[8, 16], decoder_channels=[16, 8])
    meta["training"].update(steps=steps, batch_size=16, checkpoint_every=100, log_every=50, warmup_steps=10,
                            precision="fp32", threads=1, **training)
    path = tmp_path / f"ae-{steps}.json"
    path.write_text(json.dumps(meta))
    return path


def _train(config, out, *flags):
    return subprocess.run([sys.executable, "-m", "edgediff.cli", "train", "--config", str(config), "--out", str(out),
                           *(flags or ["--quiet"])], capture_output=True, text=True, timeout=600)


def test_one_command_trains_it_on_emoji_and_records_its_scale_and_held_out_psnr(tmp_path):
    pytest.importorskip("resvg_py")
    from edgediff.training import autoencode, emoji

    out = tmp_path / "ae"
    res = _train(_tiny_recipe(tmp_path, 200), out)
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "config.json").read_text())
    assert meta["format"] == "edgediff.autoencoder" and meta["training_state"]["step"] == 200
    assert "OpenMoji" in meta["attribution"]
    _, held = emoji.split(emoji.load(resolution=16))
    white = autoencode.psnr(np.ones_like(held.images), held.images)  # the background alone
    assert meta["quality"]["held_out_images"] == len(held) == 395
    assert meta["quality"]["held_out_psnr_db"] > white + 5, (meta["quality"], white)
    net = autoencode.load(out)
    with torch.no_grad():
        z = net.encode(torch.from_numpy(held.images[:64]))
    scaled = z.numpy() * meta["autoencoder"]["scaling_factor"]
    assert 0.6 < scaled.std() < 1.6  # measured on the training latents, so held-out ones come out near unit std

    res = _train(_tiny_recipe(tmp_path, 300), out, "--threads", "1")  # more steps: resumes from step 200
    assert res.returncode == 0 and "200/300" in res.stderr, res.stderr
    assert json.loads((out / "config.json").read_text())["training_state"]["step"] == 300
    fresh = tmp_path / "fresh"
    assert _train(_tiny_recipe(tmp_path, 300), fresh).returncode == 0  # the same 300 steps without a stop
    a, b = autoencode.load(out), autoencode.load(fresh)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), name


def test_a_broken_autoencoder_config_is_one_line_with_nothing_written(tmp_path):
    meta = json.loads(open(RECIPE).read())
    meta["autoencoder"]["channels"] = [8]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(meta))
    res = _train(bad, tmp_path / "out")
    assert res.returncode != 0 and "invalid autoencoder" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
