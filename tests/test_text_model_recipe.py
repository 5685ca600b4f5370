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

from tests.text_recipe import tiny_autoencoder, tiny_recipe

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    pytest.importorskip("resvg_py")
    pytest.importorskip("transformers")
    return tiny_autoencoder(tmp_path_factory.mktemp("ae") / "ae")


def _recipe(tmp_path, autoencoder, steps: int, **training) -> Path:
    return tiny_recipe(tmp_path / f"t2i-{steps}.json", autoencoder, steps, **training)


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


def test_fine_tuning_starts_from_a_trained_text_model_and_refuses_another_one(tmp_path, autoencoder):
    from edgediff.models import text_model

    base = tmp_path / "base"
    assert _train(_recipe(tmp_path, autoencoder, 10), base).returncode == 0
    meta = json.loads(_recipe(tmp_path, autoencoder, 10, lr=1e-12, warmup_steps=0).read_text())
    meta["init"] = str(base)
    ft_config = tmp_path / "ft.json"
    ft_config.write_text(json.dumps(meta))
    res = _train(ft_config, tmp_path / "ft")
    assert res.returncode == 0, res.stderr
    a, b = text_model.load(base)[0], text_model.load(tmp_path / "ft")[0]
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name  # lr ≈ 0: where it started (not the seed's random init)
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init"] == str(base)  # the start is recorded

    meta["text_model"]["unet"]["channels"] = [16, 16]  # another architecture than the init's
    ft_config.write_text(json.dumps(meta))
    res = _train(ft_config, tmp_path / "other")
    assert res.returncode != 0 and "different text_model architecture" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "other").exists()
    meta["init"] = str(tmp_path / "nowhere")
    ft_config.write_text(json.dumps(meta))
    res = _train(ft_config, tmp_path / "other")
    assert res.returncode != 0 and "is not a trained text model" in res.stderr, res.stderr
    assert not (tmp_path / "other").exists()


def test_distill_makes_a_two_step_guidance_input_student_of_a_text_model(tmp_path, autoencoder):
    base, student = tmp_path / "base", tmp_path / "student"
    assert _train(_recipe(tmp_path, autoencoder, 10), base).returncode == 0

    def distill(model, out, *flags):
        return subprocess.run([sys.executable, "-m", "edgediff.cli", "distill", "--model", str(model), "--out",
                               str(out), "--steps", "6", "--batch-size", "8", "--threads", "1", "--quiet", *flags],
                              capture_output=True, text=True, timeout=600)

    res = distill(base, student)
    assert res.returncode == 0, res.stderr
    meta = json.loads((student / "config.json").read_text())
    assert meta["format"] == "edgediff.text_model" and meta["precond"]["kind"] == "consistency"
    assert meta["text_model"]["unet"]["guidance_embed"] is True and meta["training_state"]["step"] == 6
    assert meta["sampler_defaults"] == {"sampler": "tcd", "steps": 2, "guidance": 3.0, "gamma": 0.0}
    assert meta["distillation"]["teacher"] == "openmoji-t2i" and (student / "vae" / "weights.safetensors").is_file()
    png = tmp_path / "s.png"
    res = subprocess.run([sys.executable, "-m", "edgediff.cli", "sample", "--model", str(student), "--prompt",
                          "red apple", "--n", "2", "--out", str(png), "--quiet"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and png.stat().st_size > 0, res.stderr
    more = tmp_path / "more"  # continued from the student (--init) with an lr too small to move it: its weights
    res = distill(base, more, "--init", str(student), "--lr", "1e-12", "--decay-steps", "3")
    assert res.returncode == 0, res.stderr
    continued = json.loads((more / "config.json").read_text())
    assert continued["training"]["decay_steps"] == 3 and continued["distillation"]["init"] == str(student)
    from safetensors.torch import load_file

    first, second = load_file(student / "weights.safetensors"), load_file(more / "weights.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    for model, flags, fragment in ((student, (), "already a consistency student"),
                                   (base, ("--init", str(base)), "is not a consistency student"),
                                   (base, ("--method", "trajectory"), "distil it with --method cd"),
                                   (base, ("--w-max", "2"), "outside the scales it learns")):
        res = distill(model, tmp_path / "again", *flags)
        assert res.returncode != 0 and fragment in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "again").exists()
