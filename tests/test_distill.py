"""Consistency distillation with guidance folded in: boundary condition, one call per guided step, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgediff.converters import eager
from edgediff.converters.calibration import Recorder
from edgediff.errors import InputError
from edgediff.format import artifact
from edgediff.format.configs import Request
from edgediff.format.precond import ConsistencyPreconditioning, Preconditioning
from edgediff.models import checkpoint
from edgediff.sampling import generate
from edgediff.training import distill


def test_boundary_condition_is_the_preconditioning():
    p = ConsistencyPreconditioning()
    assert p.c_skip(p.sigma_min) == 1.0 and p.c_out(p.sigma_min) == 0.0
    assert Preconditioning.from_dict(p.to_dict()) == p
    assert abs(p.c_skip(80.0)) < 1e-4  # far from σ_min it is the EDM network output


def test_teacher_step_is_the_guided_heun_step(small_model_dir):
    md = checkpoint.load(small_model_dir)
    x = torch.randn(2, 1, 32, 32)
    s, s_next = torch.tensor([2.0, 2.0]), torch.tensor([1.0, 1.0])
    label, w = torch.tensor([1, 2]), torch.tensor([1.0, 2.5])
    with torch.no_grad():
        out = distill.solver_step(md.net, md.precond, x, s, s_next, label, w, 10, solver="heun", bf16=False)
    # the same step with the numpy sampler's pieces, image by image
    from edgediff.sampling.denoiser import make_denoiser
    from edgediff.sampling.guidance import classifier_free_guidance
    from edgediff.sampling.samplers import sample_heun

    runner = eager.load(md)
    for i in range(2):
        lab = label[i:i + 1].numpy()
        d = classifier_free_guidance(make_denoiser(runner, md.precond, label=lab),
                                     make_denoiser(runner, md.precond, label=np.full(1, 10)), float(w[i]))
        want = sample_heun(d, x[i:i + 1].numpy(), [2.0, 1.0])
        np.testing.assert_allclose(out[i:i + 1].numpy(), want, rtol=1e-4, atol=1e-4)


def test_distilled_student_takes_w_and_resumes(small_model_dir, tmp_path):
    kw = dict(config=distill.DistillConfig(scales=6), batch_size=4, lr=1e-4, progress=False, threads=1,
              precision="fp32")
    out = distill.distill(small_model_dir, tmp_path / "cd", steps=2, **kw)
    distill.distill(small_model_dir, out, steps=3, **kw)
    straight = distill.distill(small_model_dir, tmp_path / "cd2", steps=3, **kw)
    a, b = checkpoint.load(out), checkpoint.load(straight)
    assert a.unet.guidance_embed and a.precond.kind == "consistency"
    for k, v in a.net.state_dict().items():
        torch.testing.assert_close(v, b.net.state_dict()[k])
    with pytest.raises(InputError, match="already a consistency student"):
        distill.distill(out, tmp_path / "again", steps=1, **kw)


def test_a_guided_two_step_image_costs_two_network_calls(small_model_dir, tmp_path):
    """Folding guidance in: a guided 2-step consistency image = 2 calls (the teacher's CFG would need 4)."""
    out = distill.distill(small_model_dir, tmp_path / "cd", steps=1, batch_size=4, progress=False, threads=1,
                          precision="fp32")
    md = checkpoint.load(out)
    rec = Recorder(eager.load(md))
    req = Request(n=1, sampler="consistency", steps=2, guidance=2.5, label=3)
    generate.generate(rec, md.precond, (1, 32, 32), req, num_classes=10)
    assert len(rec.calls) == 2
    assert all(w is not None and float(w[0]) == 2.5 for *_, w in rec.calls)
    teacher = Recorder(eager.load(checkpoint.load(small_model_dir)))
    generate.generate(teacher, md.precond, (1, 32, 32), req, num_classes=10)
    assert len(teacher.calls) == 4  # conditional + unconditional per step


def test_guidance_input_reaches_artifacts(small_model_dir, tmp_path):
    pytest.importorskip("openvino")
    from edgediff.converters.convert import convert_model

    out = distill.distill(small_model_dir, tmp_path / "cd", steps=1, batch_size=4, progress=False, threads=1,
                          precision="fp32")
    with torch.no_grad():  # give w a visible effect before checking that it reaches the artifact
        checkpoint.load(out).net  # noqa: B018
    md = checkpoint.load(out)
    torch.nn.init.normal_(md.net.w_mlp[2].weight, std=0.5)
    checkpoint.save(out, md.net, {k: v for k, v in md.meta.items() if k not in ("format", "format_version", "unet")})
    art = convert_model(out, "openvino", tmp_path / "ov", batch=1)
    assert list(art.spec) == ["x", "t", "label", "w"] and art.parity_db >= 35
    runner = __import__("edgediff.converters.openvino", fromlist=["load"]).load(art)
    x, t, label = np.zeros((1, 1, 32, 32), np.float32), np.zeros(1, np.float32), np.array([2])
    assert not np.allclose(runner(x, t, label, np.array([1.0], np.float32)),
                           runner(x, t, label, np.array([3.0], np.float32)))
    with pytest.raises(InputError, match="w"):
        runner(x, t, label, np.array([np.nan], np.float32))
    assert artifact.read(tmp_path / "ov").spec["w"] == ((1,), "float32")
