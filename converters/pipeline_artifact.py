"""A pipeline artifact (pipeline.json + one artifact per component) opened as a `TextToImage` on its components'
own backends, with the tokenizer read from the artifact's own hash-checked files."""

from __future__ import annotations

from pathlib import Path

from edgediff.converters import base
from edgediff.errors import InputError
from edgediff.format import pipeline_manifest
from edgediff.format.clip_tokenizer import load_tokenizer
from edgediff.format.pipeline_manifest import component_choices
from edgediff.format.precond import Preconditioning
from edgediff.sampling.static_batch import static_batch
from edgediff.sampling.text_to_image import TextToImage, tokenizer_fn


def open_artifact(path, *, manifest: dict | None = None, device=None, threads: int | None = None) -> TextToImage:
    """A pipeline artifact (pipeline.json + one artifact per component) on its components' own backends.

    `device` is one device for every component or {component: device}; the tokenizer is read from the artifact's
    own (hash-checked) files."""
    path = Path(path)
    m = manifest if manifest is not None else pipeline_manifest.read(path)
    devices = component_choices(device, "device", default=None)
    runners = {}
    for name, c in m["components"].items():
        art_dir = path / c["dir"]
        runner = base.get(c["backend"]).load(art_dir, device=devices[name], threads=threads)
        runners[name] = static_batch(runner, runner.spec[next(iter(runner.spec))][0][0])
    tokenizer = load_tokenizer(path / m["tokenizer"]["dir"])
    sigmas = m["sigmas"]

    def sigmas_for(steps: int) -> list[float]:
        if str(steps) not in sigmas:
            raise InputError(f"{path.name} carries σ lists for 1..{len(sigmas)} steps; got {steps}")
        return list(sigmas[str(steps)])

    backends = sorted({c["backend"] for c in m["components"].values()})
    return TextToImage(name=m["name"], path=path, backend="+".join(backends),
                       tokenize=tokenizer_fn(tokenizer, int(m["max_length"]), m["name"]), **runners,
                       precond=Preconditioning.from_dict(m["precond"]), latent_shape=tuple(m["latent_shape"]),
                       scaling_factor=float(m["scaling_factor"]), guidance_embed=bool(m["guidance_embed"]),
                       sampler_defaults=dict(m["sampler_defaults"]), sigmas_for=sigmas_for)
