"""One cell of benchmarks/sd_sizes.py, run in its own process (so a cell killed for memory is recorded as such):

    python benchmarks/sd_sizes_cells.py '<cell JSON>'

Kinds: `build` (the random-weight folder), `convert` (edgediff.convert of the whole pipeline for one backend and
precision, with the SD VAE or TAESD decoder), `call` (ms per call of one component, its output saved for the
parent's PSNR against eager's) and `image` (seconds per image at a step count). Backends `eager` and `compile` are
the PyTorch user's baseline: diffusers' own modules and StableDiffusionPipeline (torch.compile on the UNet /
component), run on the same saved folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import sd_sizes_build as sdb
from sd_sizes_timing import measure_call, peak_rss_gb, report, time_image

TORCH_BASELINES = ("eager", "compile")


def run_build(cell: dict) -> dict:
    """The seeded random-weight pipeline folder, TAESD folder and shared inputs."""
    return sdb.build(cell["size"], cell["res"], cell["scale"], Path(cell["work"]), seed=cell.get("seed", 0))


def run_convert(cell: dict) -> dict:
    """edgediff.convert of the folder for one backend and precision; per-component time, peak RSS, size, parity."""
    # a TAESD conversion reuses the text encoder and UNet artifacts of the SD-VAE one beside it (hard-linked in
    # first: edgediff's staging then finds them built from the same inputs and keeps them)
    import edgediff

    out, reuse = Path(cell["art"]), cell.get("reuse")
    if reuse and Path(reuse, "pipeline.json").is_file() and not out.exists():
        for name in ("text_encoder", "unet"):
            shutil.copytree(Path(reuse) / name, out / name, copy_function=os.link)
    started = time.perf_counter()
    manifest = edgediff.convert(model=cell["folder"], backend=cell["backend"], precision=cell["precision"],
                                out=out, decoder=cell["taesd"] if cell["decoder"] == "taesd" else None,
                                check_steps=cell.get("check_steps"))
    wall = time.perf_counter() - started
    parts = {}
    for name, c in manifest["components"].items():
        art = json.loads((out / c["dir"] / "artifact.json").read_text())
        parts[name] = {"precision": c["precision"], "convert_s": c["convert_s"], "peak_rss_gb": c["peak_rss_mb"] / 1e3,
                       "parity_db": c["parity_db"], "bytes": art["size_bytes"]}
    return {"wall_s": round(wall, 1), "peak_rss_gb": peak_rss_gb(), "components": parts,
            "end_to_end": manifest.get("end_to_end")}


def torch_module(cell: dict):
    """The component as diffusers/transformers load it from the folder, as a callable on numpy inputs."""
    import diffusers
    import torch
    import transformers

    torch.set_num_threads(cell["threads"])
    folder, comp = Path(cell["folder"]), cell["component"]
    if comp == "text_encoder":
        m = transformers.CLIPTextModel.from_pretrained(folder / "text_encoder", use_safetensors=True).eval()
        fn = lambda ids: m(ids.long()).last_hidden_state  # noqa: E731
    elif comp == "unet":
        m = diffusers.UNet2DConditionModel.from_pretrained(folder / "unet", use_safetensors=True).eval()
        fn = lambda x, t, c: m(x, t, encoder_hidden_states=c).sample  # noqa: E731
    else:
        cls, path = ((diffusers.AutoencoderKL, folder / "vae") if comp == "vae_decoder"
                     else (diffusers.AutoencoderTiny, Path(cell["taesd"])))
        m = cls.from_pretrained(path, use_safetensors=True).eval()
        fn = lambda z: m.decode(z).sample  # noqa: E731
    if cell["backend"] == "compile":
        fn = torch.compile(fn)

    def call(*arrays):
        with torch.no_grad():
            return fn(*(torch.from_numpy(a) for a in arrays)).numpy()
    return call


def artifact_runner(cell: dict):
    """The converted component (an edgediff artifact dir inside the pipeline artifact) as a Runner."""
    from edgediff.converters import get

    name = "vae_decoder" if cell["component"] == "taesd_decoder" else cell["component"]
    return get(cell["backend"]).load(Path(cell["art"]) / name, threads=cell["threads"])


def run_call(cell: dict) -> dict:
    """ms per call of one component on the shared inputs; its output saved for PSNR against eager's."""
    load_started = time.perf_counter()
    fn = torch_module(cell) if cell["backend"] in TORCH_BASELINES else artifact_runner(cell)
    load_s = time.perf_counter() - load_started
    args = sdb.inputs(cell["folder"], cell["component"])
    return measure_call(fn, args, cell["out"], budget_s=cell["budget"], load_s=load_s)


def diffusers_pipeline(cell: dict):
    """diffusers' StableDiffusionPipeline on the folder (TAESD vae, compiled UNet when asked; edgediff's sampler):
    (steps, w) → image."""
    import diffusers
    import torch

    torch.set_num_threads(cell["threads"])
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(cell["folder"], safety_checker=None,
                                                             use_safetensors=True)
    if cell["decoder"] == "taesd":
        pipe.vae = diffusers.AutoencoderTiny.from_pretrained(cell["taesd"], use_safetensors=True)
    if cell["backend"] == "compile":
        pipe.unet = torch.compile(pipe.unet)
    sdb.same_sampler(pipe)
    pipe.set_progress_bar_config(disable=True)

    def draw(steps: int, guidance: float):
        with torch.no_grad():
            return pipe(sdb.PROMPT, num_inference_steps=steps, guidance_scale=guidance, height=cell["res"],
                        width=cell["res"], generator=torch.Generator().manual_seed(0), output_type="np").images
    return draw


def edgediff_pipeline(cell: dict):
    """The converted pipeline artifact through edgediff.load, as a (steps, guidance) → image callable."""
    import edgediff

    model = edgediff.load(cell["art"], threads=cell["threads"])
    return lambda steps, guidance: model.generate(prompt=sdb.PROMPT, seed=0, steps=steps, guidance=guidance)


def run_image(cell: dict) -> dict:
    """Seconds per image at `steps` (text encoder + UNet steps + decoder), min of medians within the budget."""
    draw = diffusers_pipeline(cell) if cell["backend"] in TORCH_BASELINES else edgediff_pipeline(cell)
    steps, guidance = cell["steps"], sdb.GUIDANCE[cell["steps"]]
    return {**time_image(lambda: draw(steps, guidance), steps=steps, budget_s=cell["budget"]), "guidance": guidance}


KINDS = {"build": run_build, "convert": run_convert, "call": run_call, "image": run_image}


def main(argv: list[str]) -> int:
    cell = json.loads(argv[1])
    report(KINDS[cell["kind"]](cell))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
