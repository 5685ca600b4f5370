"""Text-to-image latent pipelines (#17): tiny random-weight Stable Diffusion-family folders built from config in the
tests (tests/sd_folders.py, a real CLIP BPE tokenizer), read, sampled and converted on every backend.

The reference is diffusers itself: StableDiffusionPipeline / LatentConsistencyModelPipeline with the same prompt,
initial latents (and, for LCM, the same per-step noise) must give edgediff's eager images to ≤ 1e-4 relative error.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

import edgediff
from edgediff.converters import parity
from edgediff.errors import EdgediffError, EdgediffWarning, InputError
from tests.sd_folders import sd_pipeline
from tests.test_cli import assert_one_line_error, run

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

RTOL = 1e-4
PROMPT, NEGATIVE = "a red apple on a wooden table", "blurry"
FOLDERS = {  # name: sd_pipeline options
    "sd1-ddim": {},
    "sd1-dpm": {"scheduler": "DPMSolverMultistepScheduler"},
    "sd2-v": {"prediction": "v_prediction"},
    "sd1-taesd": {"vae": "tiny"},
    "lcm": {"lcm": True},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2i")
    return {name: sd_pipeline(root / name, **opts) for name, opts in FOLDERS.items()}


def reference(folder, *, steps, guidance, negative=None, latents, step_noise=None, **components) -> np.ndarray:
    """diffusers' own pipeline output in [0, 1], NHWC (what `output_type='np'` returns); `components` replace the
    folder's (e.g. vae=AutoencoderTiny)."""
    cls = diffusers.LatentConsistencyModelPipeline if step_noise is not None else diffusers.StableDiffusionPipeline
    pipe = cls.from_pretrained(folder, safety_checker=None, requires_safety_checker=False, **components)
    pipe.set_progress_bar_config(disable=True)
    kw = {} if step_noise is not None else {"negative_prompt": negative}
    gen = torch.Generator().manual_seed(7)
    out = pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, latents=torch.from_numpy(latents),
               generator=gen, output_type="np", **kw).images
    return out


def lcm_step_noise(steps: int, shape) -> list[np.ndarray]:
    """The per-step noise LCMScheduler.step draws from the pipeline's generator once the latents are given."""
    from diffusers.utils.torch_utils import randn_tensor

    gen = torch.Generator().manual_seed(7)
    return [randn_tensor(shape, generator=gen).numpy() for _ in range(steps - 1)]


def as_np_image(images: np.ndarray) -> np.ndarray:
    return np.clip(images / 2 + 0.5, 0, 1).transpose(0, 2, 3, 1)


def rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("guidance", [1.0, 7.5], ids=["no-guidance", "cfg-negative"])
@pytest.mark.parametrize("name", ["sd1-ddim", "sd1-dpm", "sd2-v", "sd1-taesd"])
def test_eager_equals_diffusers_pipeline(folders, name, guidance):
    pipe = edgediff.load(folders[name])
    latents = np.random.default_rng(0).standard_normal((1, *pipe.latent_shape)).astype(np.float32)
    negative = NEGATIVE if guidance > 1 else None
    ref = reference(folders[name], steps=10, guidance=guidance, negative=negative, latents=latents)
    ours = pipe.generate(prompt=PROMPT, negative_prompt=negative, steps=10, guidance=guidance, latents=latents)
    assert ours.shape == (1, 3, 16, 16)
    assert rel(as_np_image(ours), ref) <= RTOL


def test_a_separate_taesd_decoder_folder_decodes_as_in_diffusers(folders, tmp_path):
    from tests.sd_folders import tiny_vae

    taesd = tmp_path / "taesd"
    tiny_vae().save_pretrained(taesd)
    pipe = edgediff.load(folders["sd1-ddim"], decoder=taesd)
    latents = np.random.default_rng(0).standard_normal((1, *pipe.latent_shape)).astype(np.float32)
    ref = reference(folders["sd1-ddim"], steps=4, guidance=7.5, negative=NEGATIVE, latents=latents,
                    vae=diffusers.AutoencoderTiny.from_pretrained(taesd))  # diffusers' `pipe.vae = ...` swap
    ours = pipe.generate(prompt=PROMPT, negative_prompt=NEGATIVE, steps=4, guidance=7.5, latents=latents)
    assert rel(as_np_image(ours), ref) <= RTOL
    assert rel(ours, edgediff.load(folders["sd1-ddim"]).generate(prompt=PROMPT, steps=4, latents=latents)) > 0.1
    png = tmp_path / "taesd.png"
    res = run("sample", "--model", str(folders["sd1-ddim"]), "--decoder", str(taesd), "--prompt", PROMPT, "--steps",
              "2", "--out", str(png), "--quiet")
    assert res.returncode == 0 and png.is_file(), res.stderr
    if importlib.util.find_spec("openvino"):  # the converted pipeline carries the swapped decoder
        from edgediff.format import artifact, pipeline_manifest

        art = tmp_path / "art"
        res = run("convert", "--model", str(folders["sd1-ddim"]), "--decoder", str(taesd), "--backend", "openvino",
                  "--out", str(art))
        assert res.returncode == 0, res.stderr
        assert artifact.read(art / "vae_decoder").source["decoder_class"] == "AutoencoderTiny"
        assert pipeline_manifest.read(art)["end_to_end"]["psnr_db"] >= 30
        assert parity.psnr_db(pipe.generate(prompt=PROMPT, seed=1, steps=4),
                              edgediff.load(art).generate(prompt=PROMPT, seed=1, steps=4)) >= 30
    kl = tmp_path / "kl-4ch"
    shutil.copytree(folders["sd1-ddim"] / "vae", kl)
    (kl / "config.json").write_text(json.dumps({**json.loads((kl / "config.json").read_text()), "latent_channels": 8}))
    for bad, fragment in ((folders["sd1-ddim"] / "unet", "is a 'UNet2DConditionModel'; expected a folder"),
                          (tmp_path, "has no config.json"), (kl, "takes 8-channel latents; the UNet makes 4")):
        res = run("convert", "--model", str(folders["sd1-ddim"]), "--decoder", str(bad), "--backend", "openvino",
                  "--out", str(tmp_path / "bad"))
        assert_one_line_error(res, fragment)
        assert not (tmp_path / "bad").exists()


def test_lcm_equals_diffusers_lcm_pipeline(folders):
    pipe = edgediff.load(folders["lcm"])
    d = pipe.sampler_defaults
    assert pipe.guidance_embed and d["sampler"] == "lcm" and d["steps"] == 4 and d["guidance"] == 8.5
    latents = np.random.default_rng(0).standard_normal((1, *pipe.latent_shape)).astype(np.float32)
    noises = iter(lcm_step_noise(4, latents.shape))
    ref = reference(folders["lcm"], steps=4, guidance=8.5, latents=latents, step_noise=True)
    ours = pipe.generate(prompt=PROMPT, latents=latents, noise=lambda shape: next(noises))
    assert rel(as_np_image(ours), ref) <= RTOL
    with pytest.raises(InputError, match="embeds the guidance scale"):
        pipe.generate(prompt=PROMPT, negative_prompt="blurry")


def test_long_prompts_are_truncated_with_a_warning_as_diffusers_does(folders):
    pipe = edgediff.load(folders["sd1-ddim"])
    long = " ".join(["apple"] * 100)
    with pytest.warns(EdgediffWarning, match="truncated"):
        ids = pipe.tokenize([long])
    assert ids.shape == (1, 77) and ids[0, 0] == 49406 and ids[0, -1] == 49407
    assert pipe.tokenize(["a red apple"])[0, :5].tolist() == [49406, 320, 736, 3055, 49407]  # OpenAI's CLIP BPE ids


# ------------------------------------------------------------------------------------------ convert and sample
BACKENDS = ["openvino", "executorch", "coreml"]


@pytest.fixture(scope="module")
def artifacts(folders, tmp_path_factory):
    """{backend: pipeline artifact of the SD 1.x DDIM folder} (converted once per module, on first use; Core ML's
    UNet with Apple's Neural Engine attention, split_einsum_v2)."""
    root, made = tmp_path_factory.mktemp("t2i-art"), {}

    def get(backend):
        if backend not in made:
            made[backend] = root / backend
            options = {"attention": "split_einsum_v2"} if backend == "coreml" else {}
            edgediff.convert(folders["sd1-ddim"], backend=backend, out=made[backend], **options)
        return made[backend]

    return get


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pipeline_converts_to_a_parity_gated_artifact_and_samples(folders, artifacts, tmp_path, backend):
    pytest.importorskip({"executorch": "executorch", "openvino": "openvino", "coreml": "coremltools"}[backend])
    from edgediff.format import artifact, pipeline_manifest

    out = artifacts(backend)
    m = pipeline_manifest.read(out)
    for name, c in m["components"].items():
        art = artifact.read(out / c["dir"])  # each component is an ordinary hash-checked artifact
        assert art.backend == backend and all(-1 not in s for s, _ in art.spec.values())  # static shapes
        assert c["convert_s"] > 0 and c["peak_rss_mb"] > 0
        if backend != "coreml":
            assert c["parity_db"] >= parity.MIN_DB, (name, c)
        if backend == "executorch":
            assert art.op_coverage["islands"] <= 3, (name, art.op_coverage)
        if backend == "coreml":  # the Neural Engine attention goes to the UNet alone
            assert art.options["attention"] == ("split_einsum_v2" if name == "unet" else "original"), name
    assert m["sigmas"]["20"][-1] == pytest.approx(edgediff.load(folders["sd1-ddim"]).sigmas_for(20)[-1])
    if backend == "coreml":
        assert "skipped" in m["end_to_end"]
        pytest.skip("Core ML prediction needs macOS: the pipeline is converted and validated here, not sampled")
    assert m["end_to_end"]["psnr_db"] >= 30
    png = tmp_path / "apple.png"
    res = run("sample", "--model", str(out), "--prompt", PROMPT, "--negative-prompt", NEGATIVE, "--steps", "4",
              "--seed", "0", "--out", str(png), "--quiet")
    assert res.returncode == 0 and png.stat().st_size > 0, res.stderr
    ours = edgediff.load(out).generate(prompt=PROMPT, seed=3, steps=4)
    eager = edgediff.load(folders["sd1-ddim"]).generate(prompt=PROMPT, seed=3, steps=4)
    assert parity.psnr_db(eager, ours) >= 30


def test_fp32_conversion_records_on_the_check_prompt_alone_and_int8_calibrates_on_other_prompts(folders):
    from converters import text_to_image as t2i

    eager = edgediff.load(folders["sd1-ddim"])
    d = eager.sampler_defaults
    rows = d["steps"] * (2 if d["guidance"] > 1.0 else 1)  # UNet rows of one image (both guidance branches)
    recorded, calibration, image = t2i.record_inputs(eager, prompts=())
    assert calibration is None  # nothing calibrated: one eager image, the end-to-end reference
    np.testing.assert_array_equal(image, eager.generate(prompt=t2i.CHECK_PROMPT, seed=t2i.CHECK_SEED))
    assert len(recorded["unet"]) == min(t2i.UNET_PARITY, rows) and len(recorded["vae_decoder"]) == 1
    recorded, calibration, again = t2i.record_inputs(eager, prompts=("a photo of a cat",))
    np.testing.assert_array_equal(image, again)
    assert len(calibration) == rows and len(recorded["vae_decoder"]) == 2  # the check prompt's calls: parity only
    last_check_call = recorded["unet"][-1][0]
    assert not any(np.array_equal(last_check_call, x[None]) for x in calibration.x)


def test_sample_prompt_and_info_on_the_folder_itself(folders, tmp_path):
    png = tmp_path / "eager.png"
    res = run("sample", "--model", str(folders["sd1-ddim"]), "--prompt", PROMPT, "--steps", "3", "--out", str(png),
              "--quiet")
    assert res.returncode == 0 and png.is_file(), res.stderr
    res = run("info", "--model", str(folders["sd1-ddim"]), "--json")
    row = json.loads(res.stdout)[0]
    assert res.returncode == 0 and row["kind"] == "text_to_image" and row["latent_shape"] == [4, 8, 8]
    assert {c["class"] for c in row["components"].values()} == {"CLIPTextModel", "UNet2DConditionModel",
                                                              "AutoencoderKL"}
    assert row["components"]["text_encoder"]["params"] > 1e6  # 49408 × 32 token embeddings


def test_a_tampered_tokenizer_or_component_is_refused(artifacts, tmp_path):
    pytest.importorskip("openvino")
    src = artifacts("openvino")
    for rel_file in ("tokenizer/tokenizer_config.json", "unet/artifact.json"):
        art = tmp_path / rel_file.split("/")[0]
        shutil.copytree(src, art)
        with open(art / rel_file, "a") as f:
            f.write(" ")
        with pytest.raises(EdgediffError, match="sha256 differs"):
            edgediff.load(art)
        res = run("sample", "--model", str(art), "--prompt", "x", "--out", str(tmp_path / "x.png"))
        assert_one_line_error(res, "sha256 differs")
        assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------------------------------------ bad input
def _drop(folder, part):
    shutil.rmtree(folder / part)


def _edit_index(**changes):
    def edit(folder, _):
        index = json.loads((folder / "model_index.json").read_text())
        index.update(changes)
        (folder / "model_index.json").write_text(json.dumps(index))
    return edit


def _scheduler(folder, _):
    f = folder / "scheduler" / "scheduler_config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "_class_name": "FlowMatchEulerDiscreteScheduler"}))


def _tokenizer_files(folder, _):
    for f in ("tokenizer.json", "vocab.json", "merges.txt"):
        (folder / "tokenizer" / f).unlink(missing_ok=True)


BAD = {
    "missing vae": (lambda f, _: _drop(f, "vae"), "vae has no config.json"),
    "missing tokenizer files": (_tokenizer_files, "neither tokenizer.json nor vocab.json + merges.txt"),
    "unknown pipeline": (_edit_index(_class_name="KandinskyPipeline"), "'KandinskyPipeline'; expected a diffusers "
                                                                      "text-to-image pipeline folder"),
    "SDXL": (_edit_index(_class_name="StableDiffusionXLPipeline", text_encoder_2=["transformers", "CLIPTextModel"]),
             "SDXL-style pipelines (two text encoders) are not supported yet"),
    "unknown scheduler": (_scheduler, "scheduler 'FlowMatchEulerDiscreteScheduler' is not supported"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_folders_are_one_line_errors_with_nothing_written(folders, tmp_path, case):
    edit, fragment = BAD[case]
    bad = tmp_path / "bad"
    shutil.copytree(folders["sd1-ddim"], bad)
    edit(bad, None)
    for args, out in ((("convert", "--backend", "openvino"), tmp_path / "art"),
                      (("sample", "--prompt", "a cat"), tmp_path / "cat.png")):
        res = run(*args, "--model", str(bad), "--out", str(out))
        assert_one_line_error(res, fragment)
        assert not out.exists()


def test_bad_prompts_are_one_line_errors(folders, tmp_path):
    pipe = edgediff.load(folders["sd1-ddim"])
    with pytest.raises(InputError, match="prompt must be text"):
        pipe.generate(prompt=["a", "b"])
    with pytest.raises(InputError, match="negative prompt must be text"):
        pipe.generate(prompt="a", negative_prompt=3)
    out = tmp_path / "x.png"
    res = run("sample", "--model", str(folders["lcm"]), "--prompt", "a cat", "--negative-prompt", "blurry",
              "--out", str(out))
    assert_one_line_error(res, "embeds the guidance scale")
    assert not out.exists()
    res = run("sample", "--model", str(folders["sd1-ddim"]), "--out", str(out))
    assert_one_line_error(res, "it expects --prompt TEXT")


def test_bench_writes_per_component_and_per_image_rows(folders, artifacts, tmp_path):
    pytest.importorskip("openvino")
    records = edgediff.bench([folders["sd1-ddim"], artifacts("openvino")], out=tmp_path / "r", warmup=0, iters=2,
                             progress=False)
    names = [(r.model, r.backend) for r in records]
    assert names == [(f"sd1-ddim:{c}", b) for b in ("eager",) for c in ("text_encoder", "unet", "vae_decoder")] + [
        ("sd1-ddim", "eager")] + [(f"sd1-ddim:{c}", "openvino") for c in ("text_encoder", "unet", "vae_decoder")] + [
        ("sd1-ddim", "openvino")]
    image = records[-1]
    assert image.image_ms > 0 and image.calls_per_image == 2 * 20  # the recommended 20 steps, CFG: two UNet calls
    assert image.sampler == {"name": "euler", "steps": 20, "guidance": 7.5} and image.peak_rss_mb > 0
    assert records[5].step["p50"] > 0 and records[5].calls_per_image == 40 and records[4].calls_per_image == 2
    report = (tmp_path / "r" / "report.md").read_text().splitlines()
    table = [line for line in report if line.startswith("|")]
    assert len(table) == 2 + len(records) and len({line.count("|") for line in table}) == 1
    assert (tmp_path / "r" / "latency.png").is_file() and (tmp_path / "r" / "pareto.png").is_file()


def test_a_batch_2_unet_runs_both_guidance_branches_in_one_call(folders, artifacts, tmp_path):
    pytest.importorskip("openvino")
    from edgediff.format import artifact, pipeline_manifest

    out = tmp_path / "b2"
    res = run("convert", "--model", str(folders["sd1-ddim"]), "--backend", "openvino", "--batch", "2", "--out",
              str(out))
    assert res.returncode == 0, res.stderr
    comps = pipeline_manifest.read(out)["components"]
    assert {n: c["batch"] for n, c in comps.items()} == {"text_encoder": 1, "unet": 2, "vae_decoder": 1}
    assert artifact.read(out / "unet").spec["x"][0] == (2, 4, 8, 8) and comps["unet"]["parity_db"] >= parity.MIN_DB
    one_call = edgediff.load(out).generate(prompt=PROMPT, negative_prompt=NEGATIVE, seed=2, steps=4)
    two_calls = edgediff.load(artifacts("openvino")).generate(prompt=PROMPT, negative_prompt=NEGATIVE, seed=2,
                                                               steps=4)
    assert parity.psnr_db(two_calls, one_call) >= 60
    records = edgediff.bench([out], out=tmp_path / "r", warmup=0, iters=2, progress=False)
    assert records[1].batch == 2 and records[1].calls_per_image == 20 and records[-1].calls_per_image == 20
    assert_one_line_error(run("convert", "--model", str(folders["sd1-ddim"]), "--backend", "openvino", "--batch",
                              "3", "--out", str(tmp_path / "bad")), "a text-to-image UNet is compiled at batch 1 or 2")
    assert not (tmp_path / "bad").exists()


def test_openvino_int8_is_hybrid_and_recorded_with_a_warning(folders, tmp_path):
    pytest.importorskip("openvino")
    from edgediff.format import pipeline_manifest

    out = tmp_path / "int8"
    res = run("convert", "--model", str(folders["sd1-ddim"]), "--backend", "openvino", "--precision", "int8",
              "--check-steps", "3", "--out", str(out))
    assert res.returncode == 0, res.stderr
    manifest = pipeline_manifest.read(out)
    assert manifest["end_to_end"]["steps"] == 3  # recorded, calibrated and checked on 3-step images
    comps = manifest["components"]
    assert {n: c["precision"] for n, c in comps.items()} == {"text_encoder": "w8", "unet": "int8",
                                                             "vae_decoder": "w8"}
    assert all(c["parity_db"] is not None for c in comps.values())
    art = edgediff.load(out)
    assert art.generate(prompt=PROMPT, steps=2).shape == (1, 3, 16, 16)
    if comps["unet"]["parity_db"] < parity.MIN_DB:  # written anyway, and said so
        assert "recorded, not gated" in res.stderr
    res = run("convert", "--model", str(folders["sd1-ddim"]), "--backend", "openvino", "--precision",
              "text_encoder=int8", "--out", str(tmp_path / "bad"))
    assert_one_line_error(res, "quantizes activations, which only the UNet takes")
    res = run("convert", "--model", str(folders["sd1-ddim"]), "--backend", "openvino", "--check-steps", "0",
              "--out", str(tmp_path / "bad"))
    assert_one_line_error(res, "check_steps must be an integer from 1 to 50")
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_executorch_int8_unet_lowers_into_one_island_with_its_db_recorded(folders, tmp_path):
    """With its weights in model.ptd, as an SD-size UNet (over 1 GiB) has them: the quantized program is exported
    once, after tagging (a second, strict export failed in XNNPACK's ChannelsLastTaggedReshapePass at SD 1.5)."""
    pytest.importorskip("executorch")
    from edgediff.format import artifact, pipeline_manifest

    out = tmp_path / "et-int8"
    res = run("convert", "--model", str(folders["sd1-ddim"]), "--backend", "executorch", "--precision", "int8",
              "--external-weights", "--out", str(out))
    assert res.returncode == 0, res.stderr
    m = pipeline_manifest.read(out)
    assert {n: c["precision"] for n, c in m["components"].items()} == {"text_encoder": "fp32", "unet": "int8",
                                                                       "vae_decoder": "fp32"}
    unet = artifact.read(out / "unet")
    assert unet.op_coverage["islands"] == 1 and not unet.op_coverage["fallback_ops"], unet.op_coverage
    assert (out / "unet" / "model.ptd").is_file() and unet.op_coverage["external_weights"]["bytes"] > 0
    assert m["components"]["unet"]["parity_db"] > 20 and m["end_to_end"]["psnr_db"] > 25


@pytest.mark.slow
def test_compress_report_compares_int8_images_with_fp32(folders, tmp_path):
    pytest.importorskip("openvino")
    res = run("compress-report", "--model", str(folders["sd1-ddim"]), "--out", str(tmp_path / "cr"), "--quiet",
              timeout=1800)  # five conversions, two of them ExecuTorch UNets
    assert res.returncode == 0, res.stderr
    table = (tmp_path / "cr" / "compression.md").read_text().splitlines()
    for backend in ("openvino", "executorch"):
        rows = [line.split("|")[1:-1] for line in table if line.startswith(f"| {backend}")]
        int8 = next(r for r in rows if "int8" in r[1])
        assert float(int8[5]) > 20 and float(int8[6]) > 20, int8  # image dB vs the backend's fp32 and vs eager


def test_pipeline_runs_the_whole_job_on_a_text_to_image_folder(folders, tmp_path):
    pytest.importorskip("openvino")
    out = tmp_path / "job"
    args = ("pipeline", "--model", str(folders["sd1-ddim"]), "--out", str(out), "--targets", "openvino-fp32",
            "--quiet")
    res = run(*args)
    assert res.returncode == 0, res.stderr
    readme = (out / "README.md").read_text()
    assert "| openvino-fp32 | unet | openvino | fp32 |" in readme and "dB vs eager" in readme
    assert (out / "grids" / "eager.png").is_file() and (out / "grids" / "openvino-fp32.png").is_file()
    assert "sd1-ddim:unet" in (out / "bench" / "report.md").read_text()
    stamp = (out / ".stages" / "convert.json").read_text()
    assert run(*args).returncode == 0 and (out / ".stages" / "convert.json").read_text() == stamp  # cached
    assert_one_line_error(run("pipeline", "--model", str(folders["sd1-ddim"]), "--out", str(tmp_path / "x"),
                              "--prune", "0.5"), "--prune is not taken with a text-to-image folder")


VARIANTS = [pytest.param(name, backend, marks=() if (name, backend) == ("lcm", "openvino") else pytest.mark.slow,
                         id=f"{name}-{backend}")
            for name in ("lcm", "sd2-v", "sd1-taesd") for backend in BACKENDS]


@pytest.mark.parametrize("name, backend", VARIANTS)
def test_lcm_v_prediction_and_taesd_pipelines_convert_and_match_eager(folders, tmp_path, name, backend):
    pytest.importorskip({"coreml": "coremltools"}.get(backend, backend))
    from edgediff.format import pipeline_manifest

    out = tmp_path / "art"
    edgediff.convert(folders[name], backend=backend, out=out)
    m = pipeline_manifest.read(out)
    assert ("w" in json.loads((out / "unet" / "artifact.json").read_text())["spec"]) == (name == "lcm")  # LCM: w in
    if backend == "coreml":
        assert "skipped" in m["end_to_end"]
        pytest.skip("Core ML prediction needs macOS: the pipeline is converted and validated here, not sampled")
    assert all(c["parity_db"] >= parity.MIN_DB for c in m["components"].values())
    assert m["end_to_end"]["psnr_db"] >= 30
    eager = edgediff.load(folders[name]).generate(prompt=PROMPT, seed=1)
    assert parity.psnr_db(eager, edgediff.load(out).generate(prompt=PROMPT, seed=1)) >= 30


@pytest.mark.parametrize("form", ["tokenizer.json", "vocab.json + merges.txt, SD 2 pad '!'"])
def test_the_tokenizer_is_built_from_its_files_as_from_pretrained_builds_it(folders, tmp_path, form):
    import transformers

    from edgediff.format.clip_tokenizer import load_tokenizer, write_clip_tokenizer

    folder = folders["sd1-ddim"] / "tokenizer"
    if form != "tokenizer.json":
        folder = write_clip_tokenizer(tmp_path / "tok")
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            f = folder / name
            f.write_text(json.dumps({**json.loads(f.read_text()), "pad_token": "!"}))
    prompts = ["a red apple", "A  Photo of a CAT!!, 4k", "naïve café — 東京 🍎", " ".join(["apple"] * 90), ""]
    ours, ref = load_tokenizer(folder), transformers.CLIPTokenizer.from_pretrained(folder)
    kw = {"padding": "max_length", "max_length": 77, "truncation": True}
    assert ours(prompts, **kw).input_ids == ref(prompts, **kw).input_ids
    assert ours.pad_token_id == ref.pad_token_id == (49407 if form == "tokenizer.json" else 0)
