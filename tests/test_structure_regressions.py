"""Regression tests for the defects the structure issue lists (each failed on the flat-package main)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgediff.errors import InputError
from edgediff.format import model_dir
from edgediff.format.configs import UNetConfig
from edgediff.sampling.samplers import sample
from tests.test_cli import assert_one_line_error, run


def test_sample_passes_sigma_min_to_the_consistency_sampler():
    """Multistep consistency re-noises to √(σ_next² − σ_min²) with the σ_min it was given, not always 0.002."""
    seen = []

    def denoiser(x, sigma):
        seen.append(x.copy())
        return np.zeros_like(x)

    shape, sigma_min = (1, 1, 16, 16), 0.9
    sample(denoiser, shape, sampler="consistency", steps=2, rng=np.random.default_rng(0), sigma_min=sigma_min,
           sigma_max=80.0, sigmas=[80.0, 1.0, 0.0])
    rng = np.random.default_rng(0)
    rng.standard_normal(shape, dtype=np.float32)  # x_T
    z = rng.standard_normal(shape, dtype=np.float32)
    np.testing.assert_allclose(seen[1], z * np.sqrt(1.0 - sigma_min**2), rtol=1e-6)


@pytest.mark.parametrize("kw", [{"resolution": 33}, {"norm": "batch"}, {"attention_levels": (7,)}])
def test_unet_config_raises_input_error(kw):
    with pytest.raises(InputError):
        UNetConfig(**kw)


def test_unet_config_unknown_key_is_an_input_error():
    with pytest.raises(InputError, match="unknown UNetConfig keys"):
        UNetConfig.from_dict({"resolutoin": 32})


def _help(verb: str) -> str:
    return subprocess.run([sys.executable, "-m", "edgediff", verb, "--help"], capture_output=True, text=True,
                          check=True).stdout


def test_training_autocast_and_export_precision_have_different_names():
    for verb in ("train", "prune", "distill"):
        text = _help(verb)
        assert "--autocast" in text and "--precision" not in text, verb
    assert "--precision" in _help("convert") and "--autocast" not in _help("convert")


def test_train_config_file_is_read_not_its_sibling_config_json(tmp_path):
    """`train --config dir/mine.json` trains what mine.json says, even beside another (here broken) config.json."""
    meta = json.loads((model_dir.resolve("mnist-nano") / model_dir.CONFIG_FILE).read_text())
    meta["name"] = "mine"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "mine.json").write_text(json.dumps(meta))
    (tmp_path / "cfg" / "config.json").write_text("{ not json")
    res = run("train", "--config", str(tmp_path / "cfg" / "mine.json"), "--out", str(tmp_path / "run"),
              "--steps", "1", "--batch-size", "2", "--threads", "1", "--autocast", "fp32", "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["name"] == "mine"
    shutil.rmtree(tmp_path / "run")
    assert_one_line_error(run("train", "--config", str(tmp_path / "cfg" / "nope.json"), "--out",
                              str(tmp_path / "run"), "--quiet"), "does not exist")
    assert not (tmp_path / "run").exists()


def test_pipeline_readme_in_an_app_gives_numbers_and_formulas_not_a_python_call(tmp_path):
    """The app developer's section: input names and shapes, formulas, and c_in/c_noise/c_skip/c_out at every σ of
    the recommended schedule, equal to what the host sampler uses."""
    import edgediff
    from edgediff.format.precond import Preconditioning
    from edgediff.sampling.schedules import schedule
    from edgediff.workflow.app_guide import in_an_app

    art = edgediff.convert("default", backend="openvino", out=tmp_path / "ov")
    text = "\n".join(in_an_app(art))
    assert "edgediff.sampling" not in text and "03_mobile_export.ipynb" in text
    assert "`x` float32[1, 1, 32, 32], `t` float32[1], `label` int32[1]" in text and "c_noise(σ) = ln(σ) / 4" in text
    p, d = Preconditioning.from_dict(art.precond), art.sampler_defaults
    sigmas = schedule(d["sampler"], d["steps"], sigma_min=p.sigma_min, sigma_max=p.sigma_max, sigmas=d.get("sigmas"))
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) == len(sigmas) - 1
    for row, s in zip(rows, sigmas, strict=False):
        cells = [float(c) for c in row.strip("| ").split(" | ")[1:]]
        np.testing.assert_allclose(cells, [s, p.c_in(s), p.c_noise(s), p.c_skip(s), p.c_out(s)], rtol=1e-5)
