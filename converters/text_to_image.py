"""A text-to-image model → a pipeline artifact: one parity-gated artifact per component plus a manifest. The model
is a diffusers folder (models.text_to_image) or the project's own text model (models.text_model): both load as
the same parts (text_encoder, unet, vae_decoder, precond, σ lists, tokenizer).

The recipe, one component at a time so a laptop converts what it can hold (apple/ml-stable-diffusion's
`torch2coreml.py` does the same): run the eager pipeline once on a few prompts and record every component's real
inputs (only on the end-to-end check's prompt when nothing is calibrated: one eager image instead of three, which
at SD size is minutes); convert text encoder, UNet and VAE decoder, each gated on its own recorded inputs and freed
before the next; copy and hash the tokenizer; decode one prompt on the converted pipeline and record its PSNR
against eager's image; write `pipeline.json` last, so an interrupted run leaves no pipeline artifact (run it again:
finished components are reused).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgediff.converters import base, memory, parity
from edgediff.errors import ConversionError, EdgediffError, InputError
from edgediff.format import pipeline_manifest
from edgediff.format.files import file_sha256
from edgediff.format.pipeline_manifest import COMPONENTS, component_choices

PROMPTS = ("a red apple on a table", "a photo of a cat")  # record the inputs on these (or the model's example prompts)
CHECK_PROMPT, CHECK_SEED = "a small house by a lake", 0  # the end-to-end check's prompt and seed
MAX_STEPS = 50  # the manifest carries the scheduler's σ list for 1..MAX_STEPS steps (no diffusers on the host)
UNET_PARITY = 6  # recorded UNet calls the gate runs on (spread over the trajectory)
UNET_BATCHES = (1, 2)  # 2: classifier-free guidance's two branches in one UNet call
BACKENDS = ("openvino", "executorch", "coreml")  # those whose pipeline conversion is tested (LiteRT: not yet)
UNET_ONLY = ("attention", "chunks")  # Core ML options for the UNet (ml-stable-diffusion's --attention-implementation
# and --chunk-unet); the text encoder and decoder keep original attention and one file


def convert_pipeline(folder, backend: str, out, *, precision="fp32", unet_batch: int = 1, decoder=None,
                     check_steps: int | None = None, progress: bool = False, **options):
    """Convert every component of a text-to-image folder for `backend` into `out` (see the module docstring).

    `precision` is one name for every component or a {component: precision} dict (missing ones: fp32).
    `unet_batch` 2 compiles the UNet for both branches of classifier-free guidance in one call (diffusers' batch-2
    call; 1: two calls per step); text encoder and decoder stay at batch 1. `decoder`: a separate AutoencoderTiny
    (TAESD) / AutoencoderKL folder converted as the vae_decoder instead of the folder's vae/. `check_steps`: the
    sampler steps of the recorded images (parity inputs, int8 calibration, the end-to-end check; default the
    pipeline's recommended steps — fewer saves minutes per conversion at SD size)."""
    from edgediff.converters.pipeline_artifact import open_artifact

    be = base.get(backend)
    if unet_batch not in UNET_BATCHES or isinstance(unet_batch, bool):
        raise InputError(f"a text-to-image UNet is compiled at batch {' or '.join(map(str, UNET_BATCHES))} (2: both "
                         f"guidance branches in one call); got {unet_batch!r}")
    if backend not in BACKENDS:
        raise InputError(f"text-to-image pipelines convert for {', '.join(BACKENDS)}; {backend} does not take them yet")
    precisions = _precisions(precision, be, backend)
    if "attention" in options:  # checked before anything is converted, not at the UNet
        from edgediff.models.ane_attention import processor

        processor(options["attention"])
    if check_steps is not None and (isinstance(check_steps, bool) or not isinstance(check_steps, int)
                                    or not 1 <= check_steps <= MAX_STEPS):
        raise InputError(f"check_steps must be an integer from 1 to {MAX_STEPS}; got {check_steps!r}")
    out = Path(out)
    parts = load_parts(folder, decoder=decoder)
    eager = parts.eager()
    calibrated = any(p in be.calibrated for p in precisions.values())  # fp32-only: one eager image, not three
    runs_here = be.unavailable() is None  # else the recorded inputs only fix shapes: one step is enough
    steps = check_steps or parts.sampler_defaults["steps"]
    recorded, calibration, reference = record_inputs(
        eager, unet_batch=unet_batch, prompts=(parts.example_prompts or PROMPTS) if calibrated else (),
        steps=steps if runs_here else 1)
    memory.release()  # the eager recording's freed activations
    components = {}
    for name in COMPONENTS:
        net = getattr(parts, name)
        net.parity_inputs = recorded[name]
        spec = {k: (tuple(a.shape), str(a.dtype)) for k, a in zip(_names(name, net), recorded[name][0], strict=True)}
        started = time.perf_counter()
        if progress:
            print(f"converting {name} for {backend} ({precisions[name]}) …", flush=True)
        calib = calibration if precisions[name] in be.calibrated else None
        own = options if name == "unet" else {k: v for k, v in options.items() if k not in UNET_ONLY}
        try:
            art = be.convert(net, spec, out / name, precision=precisions[name], calibration=calib,
                             precond=parts.precond, sampler_defaults={},
                             source=parts.source(name), **own)
        except EdgediffError:
            raise
        except Exception as e:  # a converter's own failure: one line naming the component, never a traceback
            reason = (str(e).splitlines() or [""])[0][:200]
            raise ConversionError(f"{name}: {backend} {precisions[name]} conversion failed ({type(e).__name__}: "
                                  f"{reason}); nothing was written for it") from e
        components[name] = {"dir": name, "backend": backend, "precision": art.precision,
                            "parity_db": art.parity_db, "sha256": file_sha256(art.path / "artifact.json"),
                            "batch": spec[next(iter(spec))][0][0],
                            "convert_s": round(time.perf_counter() - started, 2), "peak_rss_mb": _peak_rss()}
        del net.parity_inputs, art
        _drop_weights(net)  # this conversion's own copy, loaded above: nothing after needs it
        memory.release()
    tokenizer = _hash_tokenizer(parts.copy_tokenizer(out / "tokenizer"))
    manifest = pipeline_manifest.make(
        name=parts.name, pipeline=parts.pipeline, components=components, tokenizer=tokenizer,
        max_length=parts.max_length, latent_shape=parts.latent_shape, scaling_factor=parts.scaling_factor,
        precond=parts.precond.to_dict(), guidance_embed=parts.guidance_embed,
        sampler_defaults=parts.sampler_defaults,
        sigmas={n: parts.sigmas_at(n) for n in range(1, MAX_STEPS + 1)})
    if runs_here:  # the converted pipeline end to end, against eager's image
        image = open_artifact(out, manifest=manifest).generate(prompt=CHECK_PROMPT, seed=CHECK_SEED, steps=steps)
        manifest["end_to_end"] = {"prompt": CHECK_PROMPT, "seed": CHECK_SEED, "steps": steps,
                                  "psnr_db": round(parity.psnr_db(reference, image), 2)}
    else:
        manifest["end_to_end"] = {"skipped": be.unavailable()}
    pipeline_manifest.write(out, manifest)
    return manifest


def _precisions(precision, be, backend: str) -> dict:
    """Per-component precisions. One calibrated name for the whole pipeline (int8) is hybrid, as optimum-intel's
    is: activations quantized in the UNet only, the text encoder and decoder weight-compressed (w8) where the
    backend has that, else fp32. A calibrated precision named for another component is refused."""
    if isinstance(precision, str) and "=" not in precision and precision in be.calibrated:
        rest = next((q for q in ("w8",) if q in be.precisions), "fp32")
        precision = {"unet": precision, "text_encoder": rest, "vae_decoder": rest}
    precisions = component_choices(precision, "precision", default="fp32")
    for name, p in precisions.items():
        if p not in be.precisions:
            raise InputError(f"unknown {backend} precision {p!r} for {name}; expected one of "
                             f"{', '.join(be.precisions)}")
        if p in be.calibrated and name != "unet":
            raise InputError(f"{name}: {backend} {p} quantizes activations, which only the UNet takes (calibrated on "
                             f"its own trajectories); expected one of "
                             f"{', '.join(q for q in be.precisions if q not in be.calibrated)}")
    return precisions


def _drop_weights(net) -> None:
    """Free a converted component's torch weights, so the next component's conversion and the end-to-end check run
    without them (an SD 1.5 text encoder is 0.5 GB, its UNet 3.4 GB)."""
    import itertools

    import torch

    for tensor in itertools.chain(net.parameters(), net.buffers()):
        tensor.data = torch.empty(0, dtype=tensor.dtype)


def record_inputs(pipe, *, unet_batch: int = 1, prompts=PROMPTS, steps: int | None = None):
    """Every component's inputs while the eager pipeline draws `prompts` (seeds 0, 1, …) and then the end-to-end
    check's prompt (`steps`, by default its recommended steps, and its guidance): the parity inputs per component
    (UNET_PARITY UNet calls spread over all trajectories, `unet_batch` consecutive rows each: a guided step's
    [uncond; cond]), the UNet calibration (the calls of `prompts` only, so the check image is not drawn from
    calibration data; None when `prompts` is empty) and the check prompt's eager image (the end-to-end
    reference)."""
    seen = {name: [] for name in COMPONENTS}

    def recording(name, fn):
        def call(*arrays):
            given = tuple(a for a in arrays if a is not None)
            for i in range(len(given[0])):  # one batch-1 input tuple per image
                seen[name].append(tuple(np.ascontiguousarray(a[i:i + 1]) for a in given))
            return fn(*arrays)
        return call

    import dataclasses

    rec = dataclasses.replace(pipe, **{n: recording(n, getattr(pipe, n)) for n in COMPONENTS})
    for seed, prompt in enumerate(prompts):
        rec.generate(prompt=prompt, seed=seed, steps=steps)
    calibration = _calibration(seen["unet"]) if prompts else None
    reference = rec.generate(prompt=CHECK_PROMPT, seed=CHECK_SEED, steps=steps)
    unet = seen["unet"]
    groups = [tuple(np.concatenate(col) for col in zip(*unet[i:i + unet_batch], strict=True))
              for i in range(0, len(unet) - unet_batch + 1, unet_batch)]
    pick = np.unique(np.linspace(0, len(groups) - 1, min(UNET_PARITY, len(groups))).round().astype(int))
    return {**seen, "unet": [groups[i] for i in pick]}, calibration, reference


def _calibration(calls):
    """Every recorded UNet call as calibration data (the text context rides in the label slot)."""
    from edgediff.converters.calibration import Calibration

    stack = [np.concatenate(column) for column in zip(*calls, strict=True)]
    return Calibration(stack[0], stack[1], stack[2], source="pipeline trajectories",
                       w=stack[3] if len(stack) > 3 else None)


def load_parts(folder, *, decoder=None):
    """The components of a diffusers text-to-image folder or of the project's own trained text-model directory."""
    from edgediff.format import model_dir

    if model_dir.is_text_model(folder):
        if decoder is not None:
            raise InputError(f"{folder} is an edgediff text model: it carries its own decoder (vae/); expected no "
                             f"decoder folder")
        from edgediff.models import text_model

        return text_model.parts(folder)
    from edgediff.models import text_to_image

    return text_to_image.load(folder, decoder=decoder)


def _names(name: str, net) -> tuple[str, ...]:
    if name == "text_encoder":
        return ("ids",)
    if name == "vae_decoder":
        return ("z",)
    return ("x", "t", "context", "w") if getattr(net, "cond_dim", None) is not None else ("x", "t", "context")


def _hash_tokenizer(dest: Path) -> dict:
    files = {f.name: file_sha256(f) for f in sorted(dest.iterdir()) if f.is_file()}
    return {"dir": dest.name, "sha256": files}


def _peak_rss() -> float:
    from edgediff.converters.memory import peak_rss_mb

    return round(peak_rss_mb(), 1)
