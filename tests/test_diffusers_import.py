"""Bring your own diffusers model (#16): random-weight UNet2DModels built from config in the test, saved with
`save_pretrained` as a pipeline folder (model_index.json + unet/ + scheduler/) and read through every verb.

The reference is diffusers itself: the same initial noise through diffusers' DDIM scheduler (and DDIMPipeline)
must give edgediff's eager sampler output to ≤ 1e-4 relative error.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import edgediff
from edgediff.converters import parity
from edgediff.errors import EdgediffWarning, InputError
from edgediff.models import checkpoint
from tests.test_cli import assert_one_line_error, run

diffusers = pytest.importorskip("diffusers")

KINDS = [(cond, pred) for cond in ("uncond", "class") for pred in ("epsilon", "v_prediction")]
RTOL = 1e-4


def make_unet(*, classes: int = 0, channels: int = 3, size: int = 16, attention: bool = True):
    torch.manual_seed(0)
    down = ("DownBlock2D", "AttnDownBlock2D") if attention else ("DownBlock2D", "DownBlock2D")
    up = ("AttnUpBlock2D", "UpBlock2D") if attention else ("UpBlock2D", "UpBlock2D")
    return diffusers.UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
                                 block_out_channels=(16, 32), down_block_types=down, up_block_types=up,
                                 norm_num_groups=8, attention_head_dim=8, num_class_embeds=classes or None)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """{(cond, prediction): pipeline folder} — DDIMPipelines; `<folder>/unet` is the bare-UNet form of each."""
    root = tmp_path_factory.mktemp("byom")
    out = {}
    for cond, pred in KINDS:
        unet = make_unet(classes=4 if cond == "class" else 0)
        sched = diffusers.DDIMScheduler(prediction_type=pred, clip_sample=False)
        path = root / f"{cond}-{pred}"
        diffusers.DDIMPipeline(unet=unet, scheduler=sched).save_pretrained(path)
        out[cond, pred] = path
    return out


def form(folders, kind, which: str):
    return folders[kind] if which == "pipeline" else folders[kind] / "unet"


def diffusers_ddim(path, noise: torch.Tensor, steps: int, labels=None) -> np.ndarray:
    """diffusers' own DDIM loop (what DDIMPipeline runs; it passes class labels for a class-conditional UNet)."""
    unet = diffusers.UNet2DModel.from_pretrained(path / "unet").eval()
    sched = diffusers.DDIMScheduler.from_pretrained(path / "scheduler")
    sched.set_timesteps(steps)
    x = noise.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            out = unet(x, t, class_labels=None if labels is None else torch.as_tensor(labels)).sample
            x = sched.step(out, t, x, eta=0.0).prev_sample
    return x.numpy()


def edgediff_euler(model, noise: np.ndarray, labels=None) -> np.ndarray:
    """edgediff's host sampler from the same initial noise (x_T in VP space is x_σ/√(σ²+1))."""
    from edgediff.sampling.denoiser import make_denoiser
    from edgediff.sampling.samplers import sample_euler

    sigmas = model.sampler_defaults["sigmas"]
    den = make_denoiser(model.runner, model.precond, label=labels)
    return sample_euler(den, noise * np.float32((1 + sigmas[0] ** 2) ** 0.5), sigmas)


@pytest.mark.parametrize("which", ["pipeline", "bare unet"])
@pytest.mark.parametrize("kind", KINDS, ids=["-".join(k) for k in KINDS])
def test_eager_sampler_equals_diffusers_ddim(folders, kind, which):
    model = edgediff.load(form(folders, kind, which))
    assert model.sampler_defaults["sampler"] == "euler" and model.sampler_defaults["steps"] == 20
    assert model.precond.kind == "vp" and model.precond.prediction == kind[1]
    noise = torch.randn((2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    labels = np.array([1, 3]) if kind[0] == "class" else None
    ref = diffusers_ddim(folders[kind], noise, 20, labels)
    ours = edgediff_euler(model, noise.numpy(), labels)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) <= RTOL


def test_eager_sampler_equals_diffusers_ddim_pipeline_itself(folders):
    path = folders["uncond", "epsilon"]
    pipe = diffusers.DDIMPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=20,
               output_type="np").images
    noise = torch.randn((2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    ours = np.clip(edgediff_euler(edgediff.load(path), noise.numpy()) / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) <= RTOL


# -------------------------------------------------------------------------------- convert, sample, bench, info
# The default run converts four of the cells (every backend, both forms, all four kinds, fp32 and int8; ExecuTorch
# int8 of a diffusers UNet, 94 s here, runs under -m slow with the rest); the whole
# cross product {kind} × {pipeline, bare unet} × {backend × precision} is `-m slow` (48 conversions).
CELLS = [(k, w, b, q) for k in KINDS for w in ("pipeline", "bare unet")
         for b, q in (("executorch", "fp32"), ("openvino", "fp32"), ("coreml", "fp32"), ("executorch", "int8"),
                      ("openvino", "int8"), ("coreml", "w8"))]
DEFAULT = {(("class", "epsilon"), "pipeline", "executorch", "fp32"),
           (("uncond", "v_prediction"), "bare unet", "openvino", "fp32"),
           (("uncond", "epsilon"), "bare unet", "openvino", "int8"),
           (("class", "v_prediction"), "pipeline", "coreml", "fp32")}
MATRIX = [pytest.param(k, b, w, q, id=f"{'-'.join(k)}-{w.replace(' ', '_')}-{b}-{q}",
                       marks=() if (k, w, b, q) in DEFAULT else pytest.mark.slow) for k, w, b, q in CELLS]


@pytest.mark.parametrize("kind, backend, which, precision", MATRIX)
def test_convert_and_sample_on_every_backend(folders, tmp_path, kind, backend, which, precision):
    pytest.importorskip({"executorch": "executorch", "openvino": "openvino", "coreml": "coremltools"}[backend])
    src = form(folders, kind, which)
    art = edgediff.convert(src, backend=backend, out=tmp_path / "art", precision=precision)
    record = art.source["model"]
    assert record["scheduler"] == "DDIMScheduler" and record["prediction_type"] == kind[1]
    assert not record["scheduler_assumed"] and art.precond["kind"] == "vp"
    assert ("label" in art.spec) == (kind[0] == "class")
    if backend == "executorch" and precision == "fp32":  # attention blocks lower whole into XNNPACK
        cov = art.op_coverage
        assert cov["islands"] <= 3 and set(cov["fallback_ops"]) <= {"aten.embedding.default"}, cov
    if backend == "coreml":
        pytest.skip("Core ML artifacts run on macOS only: converted and validated here, not sampled")
    if precision == "fp32":
        assert art.parity_db >= parity.MIN_DB
    else:
        assert art.parity_db is not None  # recorded, not gated
    a, labels = edgediff.load(art.path).generate(n=2, seed=3, steps=4)
    b, _ = edgediff.load(src).generate(n=2, seed=3, steps=4)
    if precision == "fp32":  # the same seed gives the same image on the backend and on eager
        assert parity.psnr_db(b, a) >= 30
    assert a.shape == (2, 3, 16, 16) and np.isfinite(a).all() and (labels is not None) == (kind[0] == "class")


def test_bench_and_info_take_a_diffusers_folder(folders, tmp_path):
    pytest.importorskip("openvino")
    path = folders["class", "v_prediction"]
    art = edgediff.convert(path, backend="openvino", out=tmp_path / "ov")
    rows = edgediff.bench([str(path), str(art.path)], out=tmp_path / "bench", iters=2, warmup=1, isolate=False)
    eager = next(r for r in rows if r.backend == "eager")
    assert eager.model == path.name and eager.step["p50"] > 0
    assert any(r.backend == "openvino" and r.parity_db >= parity.MIN_DB for r in rows)
    assert "| class-v_prediction | eager |" in (tmp_path / "bench" / "report.md").read_text()
    res = run("info", "--model", str(path))
    assert res.returncode == 0, res.stderr
    assert "diffusers DDIMPipeline, DDIMScheduler, v_prediction" in res.stdout


def test_a_bare_unet_without_a_scheduler_says_which_default_it_assumed(tmp_path):
    make_unet(attention=False).save_pretrained(tmp_path / "unet")
    with pytest.warns(EdgediffWarning, match="assumed diffusers' default DDPMScheduler"):
        md = checkpoint.load(tmp_path / "unet")
    assert md.meta["diffusers"]["scheduler_assumed"] and md.precond.sigmas[-1] > 100
    res = run("sample", "--model", str(tmp_path / "unet"), "--n", "1", "--steps", "1", "--quiet",
              "--out", str(tmp_path / "s.npy"))
    assert res.returncode == 0 and "note: " in res.stderr and "DDPMScheduler" in res.stderr


def test_guidance_on_a_class_conditional_diffusers_unet_is_an_error(folders):
    model = edgediff.load(folders["class", "epsilon"])
    with pytest.raises(InputError, match="no 'no label' class"):
        model.generate(n=2, steps=2, guidance=3.0)
    images, labels = model.generate(n=4, steps=2, label=2)
    assert labels.tolist() == [2, 2, 2, 2]


# ------------------------------------------------------------------------------------------------- distill
def test_distill_a_two_step_student_from_a_diffusers_teacher(folders, tmp_path):
    from edgediff.training import distill

    teacher = folders["class", "epsilon"]
    cfg = distill.DistillConfig(method="trajectory", trajectories=16, scales=4, substeps=1)
    out = distill.distill(teacher, tmp_path / "student", config=cfg, steps=6, batch_size=8, progress=False,
                          precision="fp32")
    md = checkpoint.load(out)
    assert md.precond.kind == "consistency" and md.sampler_defaults["steps"] == 2
    assert (md.unet.in_channels, md.unet.resolution, md.unet.num_classes) == (3, 16, 4)
    assert md.meta["data"].startswith("trajectories of")
    for backend in ("executorch", "openvino", "coreml"):
        pytest.importorskip({"executorch": "executorch", "openvino": "openvino", "coreml": "coremltools"}[backend])
        art = edgediff.convert(out, backend=backend, out=tmp_path / backend)
        if backend != "coreml":
            assert art.parity_db >= parity.MIN_DB
            images, _ = edgediff.load(art.path).generate(n=2, seed=0)
            assert images.shape == (2, 3, 16, 16) and np.isfinite(images).all()


def test_cd_distillation_of_a_diffusers_teacher_says_to_use_trajectories(folders, tmp_path):
    from edgediff.training import distill

    with pytest.raises(InputError, match="--method trajectory"):
        distill.distill(folders["uncond", "epsilon"], tmp_path / "s", config=distill.DistillConfig(method="cd"),
                        steps=1, progress=False)
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------------- RGB and class names
@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    """A 3-channel, 4-class image folder (coloured discs on white, 16×16), one subfolder per class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("rgb")
    rng = np.random.default_rng(0)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220), "yellow": (230, 220, 40)}
    yy, xx = np.mgrid[:16, :16]
    for name, colour in colours.items():
        (root / name).mkdir()
        for i in range(8):
            a = np.full((16, 16, 3), 255, np.uint8)
            r = rng.integers(3, 7)
            cy, cx = rng.integers(r, 16 - r, 2)
            a[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
            Image.fromarray(a).save(root / name / f"{i}.png")
    return root


def test_training_on_an_rgb_class_folder_derives_channels_classes_and_names(rgb_folder, tmp_path):
    out = tmp_path / "rgb-model"
    res = run("train", "--config", "mnist-nano", "--data", str(rgb_folder), "--out", str(out), "--steps", "2",
              "--batch-size", "8", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "in_channels 1 → 3, num_classes 10 → 4, resolution 32 → 16" in res.stderr
    meta = json.loads((out / "config.json").read_text())
    assert meta["name"] == "rgb-model" and meta["class_names"] == ["blue", "green", "red", "yellow"]
    assert (meta["unet"]["in_channels"], meta["unet"]["num_classes"], meta["unet"]["resolution"]) == (3, 4, 16)
    info = run("info", "--model", str(out))
    assert "classes: blue, green, red, yellow" in info.stdout, info.stdout + info.stderr
    pytest.importorskip("openvino")
    art = edgediff.convert(out, backend="openvino", out=tmp_path / "ov")
    assert art.source["class_names"] == ["blue", "green", "red", "yellow"]
    model = edgediff.load(art.path)
    images, labels = model.generate(n=8, steps=2)
    named, plain = tmp_path / "named.png", tmp_path / "plain.png"
    edgediff.save(named, images, labels, class_names=model.class_names)
    edgediff.save(plain, images, labels)
    from PIL import Image

    with Image.open(named) as a, Image.open(plain) as b:  # one row per class, its name in a left margin
        assert a.height == 2 * (4 * 17 + 1) and a.width > 2 * (2 * 17 + 1)
        margin = np.asarray(a.convert("L"))[:, : a.width - 2 * (2 * 17 + 1)]
        assert (margin < 128).any() and b.size != a.size  # the text is there


def test_eval_refuses_rgb_before_writing_anything(folders, tmp_path):
    out = tmp_path / "s.npy"
    res = run("sample", "--model", str(folders["uncond", "epsilon"]), "--n", "2", "--out", str(out), "--eval")
    assert_one_line_error(res, "RGB")
    assert not out.exists()
    np.save(tmp_path / "rgb.npy", np.zeros((4, 3, 16, 16), np.float32))
    assert_one_line_error(run("eval", "--samples", str(tmp_path / "rgb.npy")), "RGB")


def test_pipeline_runs_the_whole_job_on_a_diffusers_folder(folders, tmp_path):
    pytest.importorskip("openvino")
    out = tmp_path / "job"
    res = run("pipeline", "--model", str(folders["uncond", "v_prediction"]), "--targets", "openvino-fp32",
              "--n", "4", "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr[-2000:]
    readme = (out / "README.md").read_text()
    assert "F is v: c_skip(σ) = 1 / (σ² + 1)" in readme and "| uncond-v_prediction | openvino |" in readme


@pytest.mark.parametrize("skip_prk", [True, False])
def test_pndm_scheduler_sigmas_walk_its_step_grid_without_repeats(skip_prk):
    """SD 1.x ships PNDM, whose timestep list repeats a step (PLMS warm-up) or adds half steps (PRK): the σ list is
    its grid — the same as DDIM's from the same config — strictly decreasing, so no sampler step has zero length."""
    diffusers = pytest.importorskip("diffusers")
    from edgediff.format.precond import VPPreconditioning
    from edgediff.models.diffusers import scheduler_sigmas

    sd15 = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
            "set_alpha_to_one": False, "skip_prk_steps": skip_prk, "steps_offset": 1}
    pndm = diffusers.PNDMScheduler.from_config(sd15)
    ac = pndm.alphas_cumprod.double()
    precond = VPPreconditioning.from_table(((1 - ac) / ac).sqrt().tolist(), prediction="epsilon")
    for steps in (4, 20, 50):
        sigmas = scheduler_sigmas(pndm, precond, steps)
        assert len(sigmas) == steps + 1 and all(a > b for a, b in zip(sigmas, sigmas[1:], strict=False))
        assert sigmas == scheduler_sigmas(diffusers.DDIMScheduler.from_config(sd15), precond, steps)
