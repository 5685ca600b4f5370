"""The optimum-intel peer of benchmarks/sd_sizes.py: one cell, run with the peer environment's python
(runs/venv-optimum, which sd_sizes.py creates with exact pins; edgediff is not installed there):

    runs/venv-optimum/bin/python benchmarks/sd_sizes_optimum.py '<cell JSON>'

`convert`: OVStableDiffusionPipeline export of the same saved folder (fp32, or its hybrid int8:
OVWeightQuantizationConfig(bits=8, quant_method="hybrid") calibrated on the local PROMPTS — no downloads), then its
static `reshape(batch_size=1, height, width, num_images_per_prompt=1)` and `save_pretrained`. `call`: one exported
component's compiled request on the shared inputs. `image`: the pipeline's own `__call__` with DPM-Solver++(2M),
edgediff's sampler (`sd_sizes_build.same_sampler`). Inference is asked for
f32 (INFERENCE_PRECISION_HINT), as edgediff's OpenVINO fp32/int8 artifacts are, so bf16 does not flatter either side.

optimum's reshape assumes classifier-free guidance (a batch-2 UNet); runs without guidance (1 and 4 steps) and the
per-call UNet figure reshape the UNet to batch 1 here, which is what a user of those step counts would do.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import sd_sizes_build as sdb
from sd_sizes_timing import dir_bytes, measure_call, peak_rss_gb, report, time_image

PROMPTS = ("a red apple on a wooden table", "a photo of a cat sleeping on a sofa", "a lighthouse on a cliff at dusk",
           "a bowl of ramen, studio lighting", "an astronaut riding a horse on mars", "a watercolor of a fox in snow",
           "a city street at night in the rain", "a vintage car parked by the sea")  # hybrid int8 calibration
INPUT_NAMES = {"text_encoder": ("input_ids",), "unet": ("sample", "timestep", "encoder_hidden_states"),
               "vae_decoder": ("latent_sample",)}


def ov_config(cell: dict) -> dict:
    return {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(cell["threads"])}


def run_convert(cell: dict) -> dict:
    """Export (and for int8, hybrid-quantize) the folder, reshape it statically, save it; wall time and peak RSS."""
    from optimum.intel import OVStableDiffusionPipeline, OVWeightQuantizationConfig

    started = time.perf_counter()
    q = None
    if cell["precision"] == "int8":
        q = OVWeightQuantizationConfig(bits=8, quant_method="hybrid", dataset=list(PROMPTS),
                                       num_samples=cell.get("samples"))
    pipe = OVStableDiffusionPipeline.from_pretrained(cell["folder"], export=True, compile=False, load_in_8bit=False,
                                                     quantization_config=q, ov_config=ov_config(cell),
                                                     use_safetensors=True)
    pipe.reshape(batch_size=1, height=cell["res"], width=cell["res"], num_images_per_prompt=1)
    pipe.save_pretrained(cell["art"])
    wall = time.perf_counter() - started
    parts = {name: {"bytes": dir_bytes(Path(cell["art"]) / name)} for name in INPUT_NAMES}
    return {"wall_s": round(wall, 1), "peak_rss_gb": peak_rss_gb(), "components": parts}


def load(cell: dict, *, unet_batch: int | None):
    """The saved pipeline, its UNet reshaped to `unet_batch` (None: as saved, batch 2 for guidance)."""
    from optimum.intel import OVStableDiffusionPipeline

    pipe = OVStableDiffusionPipeline.from_pretrained(cell["art"], compile=False, dynamic_shapes=False,
                                                     ov_config=ov_config(cell),  # keep the saved static shapes
                                                     use_safetensors=True)
    if unet_batch is not None:
        model = pipe.unet.model
        shapes = {}
        for port in model.inputs:
            shape = list(port.get_partial_shape().to_shape())
            shapes[port.get_any_name()] = [unet_batch, *shape[1:]] if shape else shape
        model.reshape(shapes)
        pipe.unet.request = None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def component_call(pipe, component: str):
    """The compiled component request as a callable on the shared numpy inputs (cast to its input types)."""
    part = getattr(pipe, component)
    part.compile()
    types = {p.get_any_name(): p.get_element_type().to_dtype() for p in part.model.inputs}
    names = INPUT_NAMES[component]

    def call(*arrays):
        return part.request({n: a.astype(types[n]) for n, a in zip(names, arrays, strict=True)})[0]
    return call


def run_call(cell: dict) -> dict:
    """ms per call of one exported component on the shared inputs; its output saved for PSNR against eager's."""
    started = time.perf_counter()
    pipe = load(cell, unet_batch=1)
    fn = component_call(pipe, cell["component"])
    load_s = time.perf_counter() - started
    args = sdb.inputs(cell["folder"], cell["component"])
    return measure_call(fn, args, cell["out"], budget_s=cell["budget"], load_s=load_s)


def run_image(cell: dict) -> dict:
    """Seconds per image at `steps` through the optimum pipeline's own __call__."""
    import torch

    steps = cell["steps"]
    guidance = sdb.GUIDANCE[steps]
    pipe = load(cell, unet_batch=None if guidance > 1.0 else 1)
    sdb.same_sampler(pipe)  # N UNet calls for N steps, as edgediff's (the folder's PNDM makes N + 1)

    def draw():
        return pipe(sdb.PROMPT, num_inference_steps=steps, guidance_scale=guidance, height=cell["res"],
                    width=cell["res"], generator=torch.Generator().manual_seed(0), output_type="np").images
    return {**time_image(draw, steps=steps, budget_s=cell["budget"]), "guidance": guidance}


KINDS = {"convert": run_convert, "call": run_call, "image": run_image}


def main(argv: list[str]) -> int:
    cell = json.loads(argv[1])
    report(KINDS[cell["kind"]](cell))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
