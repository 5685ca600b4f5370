"""Flags that would be silently ignored are refused (bring-your-own-model issue, point 5 and the RGB eval row):
guidance on an unconditional model, and --eval on images the FID-proxy cannot measure — each a one-line error
before anything is sampled or written."""

from __future__ import annotations

import numpy as np
import pytest

import edgediff
from edgediff.errors import InputError
from tests.test_cli import assert_one_line_error, run


@pytest.fixture(scope="module")
def unconditional(tmp_path_factory):
    """The OpenVINO artifact of a random-weight unconditional diffusers UNet2DModel (16×16, 1 channel)."""
    diffusers = pytest.importorskip("diffusers")
    pytest.importorskip("openvino")
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("uncond") / "unet"
    diffusers.UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(16, 32),
                          layers_per_block=1, norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                          up_block_types=("UpBlock2D", "UpBlock2D")).save_pretrained(path)
    return edgediff.convert(path, backend="openvino", out=path.parent / "ov").path


def test_guidance_on_an_unconditional_model_is_an_error_not_ignored(unconditional, tmp_path):
    model = edgediff.load(unconditional)
    with pytest.raises(InputError, match="unconditional: classifier-free guidance needs class labels"):
        model.generate(n=2, steps=2, guidance=3.0)
    a, _ = model.generate(n=2, steps=2, guidance=1.0)
    b, _ = model.generate(n=2, steps=2)
    np.testing.assert_array_equal(a, b)
    out = tmp_path / "g.npy"
    assert_one_line_error(run("sample", "--model", str(unconditional), "--guidance", "3", "--n", "2", "--steps",
                              "2", "--quiet", "--out", str(out)), "needs class labels")
    assert not out.exists()
    ok = run("sample", "--model", str(unconditional), "--guidance", "1", "--n", "2", "--steps", "2", "--quiet",
             "--out", str(out))
    assert ok.returncode == 0 and "--guidance 1 changes nothing" in ok.stderr and out.is_file()


def test_eval_refuses_images_the_metric_cannot_measure_before_writing(unconditional, tmp_path):
    out = tmp_path / "s.npy"
    assert_one_line_error(run("sample", "--model", str(unconditional), "--eval", "--n", "2", "--steps", "2",
                              "--quiet", "--out", str(out)), "this model makes 1×16×16 images")
    assert not out.exists()
    rgb = tmp_path / "rgb.npy"
    np.save(rgb, np.zeros((4, 3, 32, 32), np.float32))
    assert_one_line_error(run("eval", "--samples", str(rgb)), "no metric for other image shapes")
