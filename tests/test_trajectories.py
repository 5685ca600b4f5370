"""Trajectory distillation: the stored teacher trajectories are the shared sampler's path; store and student resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgediff.converters import eager
from edgediff.errors import InputError
from edgediff.models import checkpoint
from edgediff.sampling.denoiser import make_denoiser
from edgediff.sampling.guidance import classifier_free_guidance
from edgediff.sampling.samplers import sample_dpmpp_2m
from edgediff.sampling.schedules import karras_sigmas
from edgediff.training import distill, trajectories


def _store(model_dir, out, **kw):
    cfg = trajectories.TrajectoryConfig(**{"count": 4, "levels": 4, "substeps": 2, "chunk": 2, "bf16": False,
                                           "label_dropout": 0.25, **kw})
    return trajectories.generate(checkpoint.load(model_dir), out, cfg, progress=False), cfg


def test_states_and_endpoints_are_the_numpy_samplers_path(small_model_dir, tmp_path):
    """Each row re-solved image by image with the deploy-time numpy sampler visits the stored states."""
    store, cfg = _store(small_model_dir, tmp_path / "t", guided_fraction=0.5, seed=3)
    md = checkpoint.load(small_model_dir)
    runner = eager.load(md)
    fine = karras_sigmas((cfg.levels - 1) * cfg.substeps + 1)
    assert store.states.shape == (4, cfg.levels - 1, 1, 32, 32)
    np.testing.assert_allclose(store.sigmas.numpy(), karras_sigmas(cfg.levels)[:-2], rtol=1e-6)
    assert (store.w != 1).any() and (store.w == 1).any()  # both kinds of rows are exercised
    for i in range(len(store)):
        label = store.label[i:i + 1].numpy()
        d = make_denoiser(runner, md.precond, label=label)
        if float(store.w[i]) != 1.0 and int(label[0]) != md.unet.null_label:
            d = classifier_free_guidance(d, make_denoiser(runner, md.precond, label=np.full(1, 10)),
                                         float(store.w[i]))
        seen = []
        x0 = sample_dpmpp_2m(d, store.states[i:i + 1, 0].numpy(), fine,
                             callback=lambda k, s, x, _, seen=seen: seen.append(x) if k % cfg.substeps == 0 else None)
        np.testing.assert_allclose(store.x0[i:i + 1].numpy(), x0, rtol=1e-4, atol=2e-4)
        for j in range(cfg.levels - 1):
            np.testing.assert_allclose(store.states[i:i + 1, j].numpy(), seen[j], rtol=1e-4, atol=2e-4)


def test_store_resumes_identically_and_refuses_other_settings(small_model_dir, tmp_path):
    first, _ = _store(small_model_dir, tmp_path / "t", count=6)
    (tmp_path / "t" / "chunk-00001.safetensors").unlink()  # as if killed before the second chunk landed
    again, _ = _store(small_model_dir, tmp_path / "t", count=6)
    for k in ("states", "x0", "label", "w"):
        torch.testing.assert_close(getattr(again, k), getattr(first, k))
    more, _ = _store(small_model_dir, tmp_path / "t", count=8)  # a larger count extends the store
    assert len(more) == 8
    torch.testing.assert_close(more.x0[:6], first.x0)
    for other in ({"count": 4}, {"count": 8, "substeps": 3}):
        with pytest.raises(InputError, match="other settings"):
            _store(small_model_dir, tmp_path / "t", **other)
    (tmp_path / "t" / "chunk-00003.safetensors").unlink()
    with pytest.raises(InputError, match="unfinished trajectory store"):
        trajectories.load(tmp_path / "t")


def test_trajectory_student_resumes_and_starts_from_init(small_model_dir, tmp_path):
    cfg = distill.DistillConfig(scales=4, method="trajectory", trajectories=6)
    kw = dict(config=cfg, batch_size=4, lr=1e-4, progress=False, threads=1, precision="fp32")
    out = distill.distill(small_model_dir, tmp_path / "td", steps=2, **kw)
    distill.distill(small_model_dir, out, steps=3, **kw)
    straight = distill.distill(small_model_dir, tmp_path / "td2", steps=3, **kw)
    a, b = checkpoint.load(out), checkpoint.load(straight)
    assert a.precond.kind == "consistency" and a.meta["distillation"]["method"] == "trajectory"
    for k, v in a.net.state_dict().items():
        torch.testing.assert_close(v, b.net.state_dict()[k])
    # --init: a run started from `out` starts at `out`'s weights (an lr of 1e-9 keeps them to 1e-8)
    from_a = distill.distill(small_model_dir, tmp_path / "td3", steps=1, init=out, **{**kw, "lr": 1e-9})
    for k, v in checkpoint.load(from_a).net.state_dict().items():
        torch.testing.assert_close(v, a.net.state_dict()[k])
    with pytest.raises(InputError, match="not a consistency student"):
        distill.distill(small_model_dir, tmp_path / "td4", steps=1, init=small_model_dir, **kw)
