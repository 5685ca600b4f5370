"""The project's own text model as a pipeline artifact (#18): `convert` turns a text-model directory into the same
multi-component artifact a diffusers folder becomes (TinyTextEncoder, cross-attention UNet, the tiny autoencoder's
decoder; EDM σ lists in the manifest; the shipped CLIP tokenizer copied and hashed), every component gated, and the
same seed draws the same image on each backend as eagerly. `info`, `bench` and `sample --prompt` take the directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from edgediff.converters import base, parity
from edgediff.errors import InputError
from edgediff.format.configs import UNetConfig
from edgediff.format.latent_configs import AutoencoderConfig, TextEncoderConfig, TextModelConfig
from edgediff.format.model_dir import AUTOENCODER_FORMAT, TEXT_MODEL_FORMAT
from edgediff.format.precond import Preconditioning
from edgediff.models import checkpoint

PROMPTS = ["red apple", "grinning face", "rocket"]
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random-weight text model (latents 4×8×8 → 16×16 RGB) saved as `edgediff train` saves one."""
    pytest.importorskip("transformers")
    from edgediff.format.clip_tokenizer import shipped_tokenizer
    from edgediff.models.autoencoder import TinyAutoencoder
    from edgediff.models.text_model import TextModel

    torch.manual_seed(0)
    cfg = TextModelConfig(
        text_encoder=TextEncoderConfig(vocab_size=64, max_length=8, width=16, layers=1, heads=2),
        unet=UNetConfig(resolution=8, in_channels=4, out_channels=4, channels=(16, 32), attention_levels=(1,),
                        time_embed_dim=32, num_classes=0, context_dim=16, groups=8))
    net = TextModel(cfg)
    torch.nn.init.normal_(net.unet.conv_out.weight, std=0.05)  # zero-initialised: the prompt would not show
    ids = sorted({i for p in PROMPTS for i in shipped_tokenizer(max_length=8)(p).input_ids})
    net.text_encoder.set_vocabulary(ids)
    root = tmp_path_factory.mktemp("t2i") / "tiny-t2i"
    checkpoint.save(root, net, {"format": TEXT_MODEL_FORMAT, "name": "tiny-t2i", "autoencoder": "tiny-ae",
                                "autoencoder_dir": "vae", "precond": Preconditioning().to_dict(),
                                "sampler_defaults": {"sampler": "dpmpp_2m", "steps": 4, "guidance": 3.0},
                                "example_prompts": PROMPTS, "weights_dtype": "float16"})
    ae = TinyAutoencoder(AutoencoderConfig(resolution=16, channels=(8, 16), decoder_channels=(16, 8),
                                           scaling_factor=2.0))
    checkpoint.save(root / "vae", ae, {"format": AUTOENCODER_FORMAT, "name": "tiny-ae"})
    return root


@pytest.fixture(scope="module")
def student_dir(model_dir):
    """A random-weight 2-step consistency student of that model (guidance scale as a UNet input), as `distill`
    writes one."""
    import dataclasses

    from edgediff.format.precond import ConsistencyPreconditioning
    from edgediff.models import text_model

    teacher, meta = text_model.load(model_dir)
    net = text_model.TextModel(dataclasses.replace(teacher.config,
                                                   unet=teacher.config.unet.replace(guidance_embed=True)))
    net.load_state_dict(teacher.state_dict(), strict=False)
    torch.manual_seed(1)
    torch.nn.init.normal_(net.unet.w_mlp[2].weight, std=0.2)  # zero-initialised: w would not show
    root = model_dir.parent / "tiny-t2i-student"
    checkpoint.save(root, net, {**meta, "name": "tiny-t2i-student", "precond": ConsistencyPreconditioning().to_dict(),
                                "sampler_defaults": {"sampler": "tcd", "steps": 2, "guidance": 3.0, "gamma": 0.0}})
    shutil.copytree(model_dir / "vae", root / "vae")  # the teacher's autoencoder travels with it
    return root


@pytest.fixture(scope="module")
def eager(model_dir):
    import edgediff

    return edgediff.load(model_dir)


def test_weights_are_stored_as_the_config_says_and_load_as_float32(model_dir):
    from safetensors import safe_open

    from edgediff.models import text_model

    with safe_open(str(model_dir / checkpoint.WEIGHTS_FILE), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert "F16" in dtypes and "F32" not in dtypes  # weights_dtype float16: half the MB (int buffers stay int)
    net, _ = text_model.load(model_dir)
    assert all(p.dtype == torch.float32 for p in net.parameters())


@pytest.mark.parametrize("backend", ["openvino", "executorch", "coreml"])
def test_text_model_converts_to_a_gated_pipeline_artifact_that_draws_eagers_image(tmp_path, model_dir, eager,
                                                                                  backend):
    import edgediff
    from edgediff.format import pipeline_manifest

    be = base.get(backend)
    if not base.installed(be):
        pytest.skip(f"{backend} is not installed")
    precision = "fp16" if backend == "coreml" else "fp32"
    out = tmp_path / backend
    m = edgediff.convert(model=model_dir, backend=backend, out=out, precision=precision)
    assert m == pipeline_manifest.read(out)  # every component and tokenizer file hash-checked on read
    assert m["pipeline"] == "edgediff TextModel" and m["precond"]["kind"] == "edm"
    assert m["latent_shape"] == [4, 8, 8] and m["scaling_factor"] == 2.0 and m["max_length"] == 8
    assert m["sigmas"]["4"] == pytest.approx(eager.sigmas_for(4))  # Karras σ, as the eager pipeline walks them
    if be.unavailable() is not None:  # Core ML off macOS: converted and validated, not run
        assert m["end_to_end"] == {"skipped": be.unavailable()}
        assert all(c["parity_db"] is None for c in m["components"].values())
        return
    for name, c in m["components"].items():
        assert c["parity_db"] >= parity.gate_for(precision), name
    pipe = edgediff.load(out)
    for prompt in PROMPTS[:2]:
        want = eager.generate(prompt=prompt, n=2, seed=3)
        got = pipe.generate(prompt=prompt, n=2, seed=3)
        assert got.shape == (2, 3, 16, 16)
        assert parity.psnr_db(want, got) >= 30.0, prompt  # acceptance 4: the same seed, the same image
    assert m["end_to_end"]["psnr_db"] >= 30.0


@pytest.mark.parametrize("backend", ["openvino", pytest.param("executorch", marks=pytest.mark.slow), "coreml"])
def test_a_two_step_student_converts_with_its_guidance_input_and_draws_eagers_image(tmp_path, student_dir, backend):
    import edgediff
    from edgediff.sampling.schedules import schedule

    eager = edgediff.load(student_dir)
    assert eager.guidance_embed and eager.sampler_defaults["steps"] == 2
    assert eager.sigmas_for(2) == pytest.approx(schedule("consistency", 2))  # [σ_max, 2.5…, 0]: no σ_min step
    a, b = (eager.generate(prompt="red apple", n=2, seed=0, guidance=g) for g in (1.0, 3.0))
    assert a.shape == (2, 3, 16, 16) and float(abs(a - b).max()) > 1e-4  # w is an input of the UNet (float noise: 1e-7)
    c = eager.generate(prompt="red apple", n=2, seed=0, guidance=3.0, gamma=1.0)  # fresh noise at step 2 instead
    assert float(abs(c - b).max()) > 1e-3
    with pytest.raises(InputError, match="tcd"):
        eager.generate(prompt="red apple", sampler="consistency", gamma=0.5)
    be = base.get(backend)
    if not base.installed(be):
        pytest.skip(f"{backend} is not installed")
    precision = "fp16" if backend == "coreml" else "fp32"
    m = edgediff.convert(model=student_dir, backend=backend, out=tmp_path / backend, precision=precision)
    assert m["guidance_embed"] is True and m["precond"]["kind"] == "consistency"
    assert m["sampler_defaults"] == {"sampler": "tcd", "steps": 2, "guidance": 3.0, "gamma": 0.0}  # γ travels too
    if be.unavailable() is not None:  # Core ML off macOS: converted and validated, not run
        assert m["end_to_end"] == {"skipped": be.unavailable()}
        return
    assert all(c["parity_db"] >= parity.gate_for(precision) for c in m["components"].values())
    got = edgediff.load(tmp_path / backend).generate(prompt="red apple", n=2, seed=0, guidance=3.0)
    assert parity.psnr_db(b, got) >= 30.0  # the same seed and w, the same image


def test_info_bench_and_sample_take_the_text_model_directory(tmp_path, model_dir, eager):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "edgediff.cli", *args], capture_output=True, text=True,
                              timeout=300)

    res = cli("info", "--model", str(model_dir), "--json")
    assert res.returncode == 0, res.stderr
    [row] = json.loads(res.stdout)
    comps = row["components"]
    assert set(comps) == {"text_encoder", "unet", "vae_decoder"}
    from edgediff.models import text_model

    net, _ = text_model.load(model_dir)
    assert comps["unet"]["params"] == sum(p.numel() for p in net.unet.parameters())
    assert comps["text_encoder"]["params"] == sum(p.numel() for p in net.text_encoder.parameters())

    res = cli("bench", str(model_dir), "--out", str(tmp_path / "bench"), "--iters", "2", "--warmup", "1",
              "--quiet")
    assert res.returncode == 0, res.stderr
    rows = json.loads((tmp_path / "bench" / "report.json").read_text())
    names = {r["model"] for r in rows}
    assert {"tiny-t2i:text_encoder", "tiny-t2i:unet", "tiny-t2i:vae_decoder", "tiny-t2i"} <= names
    assert all(r["backend"] == "eager" for r in rows)

    png = tmp_path / "apple.png"
    res = cli("sample", "--model", str(model_dir), "--prompt", "red apple", "--n", "2", "--seed", "0", "--out",
              str(png), "--quiet")
    assert res.returncode == 0 and png.stat().st_size > 0, res.stderr
    res = cli("sample", "--model", str(model_dir), "--out", str(tmp_path / "x.png"))
    assert res.returncode != 0 and "expects --prompt" in res.stderr


def test_a_text_model_takes_no_separate_decoder(tmp_path, model_dir):
    import edgediff
    from edgediff.errors import InputError

    with pytest.raises(InputError, match="carries its own decoder"):
        edgediff.convert(model=model_dir, backend="openvino", out=tmp_path / "x", decoder=str(model_dir / "vae"))
    assert not (tmp_path / "x").exists()


def test_pipeline_task_text_to_image_runs_the_whole_job_on_the_directory(tmp_path, model_dir):
    res = subprocess.run([sys.executable, "-m", "edgediff.cli", "pipeline", "--task", "text-to-image", "--model",
                          str(model_dir), "--targets", "openvino-fp32", "--out", str(tmp_path / "p"), "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    readme = (tmp_path / "p" / "README.md").read_text()
    assert "tiny-t2i (text-to-image)" in readme and "EDM" in readme
    assert "Recommended sampler: dpmpp_2m × 4 steps, guidance 3.0; per step: x0 = D(x, σ_i)" in readme
    assert (tmp_path / "p" / "grids" / "openvino-fp32.png").is_file()
    res = subprocess.run([sys.executable, "-m", "edgediff.cli", "pipeline", "--task", "text-to-image", "--model",
                          "mnist-tiny", "--out", str(tmp_path / "q")], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "--task text-to-image takes a text-to-image model" in res.stderr
    assert not (tmp_path / "q").exists()


def test_weight_compressed_text_encoder_keeps_the_token_ids(tmp_path, model_dir):
    """OpenVINO w8 compresses float tables it takes for embeddings; the CLIP → compact id map is an integer gather,
    so the ids survive and the text encoder stays near fp32 (it read other tokens, 17 dB, when the map was float)."""
    import edgediff

    if not base.installed(base.get("openvino")):
        pytest.skip("openvino is not installed")
    m = edgediff.convert(model=model_dir, backend="openvino", out=tmp_path / "w8", precision={"text_encoder": "w8"})
    assert m["components"]["text_encoder"]["precision"] == "w8"
    assert m["components"]["text_encoder"]["parity_db"] >= 35.0
