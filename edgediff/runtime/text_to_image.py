"""Prompt → image with the one host sampler: tokenizer → text encoder → UNet steps in σ-space → VAE decoder.

The networks are Runners (eager torch here; backend artifacts alike), the diffusion maths is host-side numpy: the
UNet's `label` slot carries the text embedding, classifier-free guidance (Ho & Salimans 2022) is the Denoiser
wrapper every model uses, with the negative prompt (or "") as the unconditional branch, as diffusers does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.errors import EdgediffWarning, InputError
from edgediff.format.precond import VPPreconditioning
from edgediff.sampling.denoiser import make_denoiser
from edgediff.sampling.guidance import classifier_free_guidance
from edgediff.sampling.samplers import get_sampler

Network = Callable[..., np.ndarray]  # numpy in, numpy out


@dataclass(frozen=True, kw_only=True)
class TextToImage:
    """A loaded text-to-image pipeline (what `edgediff.load` returns for one): call `generate(prompt=...)`."""

    name: str
    path: Path
    backend: str
    tokenize: Callable[[list[str]], np.ndarray]  # prompts → int32 ids [B, max_length]
    text_encoder: Network  # ids → context
    unet: Network  # (x, t, context[, w]) → ε | v | x0
    vae_decoder: Network  # latents / scaling → image in [-1, 1]
    precond: VPPreconditioning
    latent_shape: tuple[int, int, int]
    scaling_factor: float
    guidance_embed: bool
    sampler_defaults: dict
    sigmas_for: Callable[[int], list[float]]  # the scheduler's σ list at n steps

    def encode(self, prompts: list[str]) -> np.ndarray:
        return np.asarray(self.text_encoder(self.tokenize(prompts)), dtype=np.float32)

    def generate(self, *, prompt, negative_prompt=None, n: int = 1, seed: int = 0, steps: int | None = None,
                 guidance: float | None = None, sampler: str | None = None, latents: np.ndarray | None = None,
                 noise: Callable[[tuple], np.ndarray] | None = None, progress: bool = False) -> np.ndarray:
        """Images float32 [n, 3, H, W] in [-1, 1] for `prompt` (a string). What is left None is the pipeline's
        recommendation; `latents` (VP space, [n, C, h, w]) replaces the seeded initial noise and `noise(shape)` the
        seeded noise of stochastic samplers (LCM, Euler ancestral), e.g. to reproduce another implementation."""
        prompt, negative = _text(prompt, "prompt"), None if negative_prompt is None else _text(
            negative_prompt, "negative prompt")
        d = self.sampler_defaults
        steps = int(steps or d["steps"])
        guidance = float(d["guidance"] if guidance is None else guidance)
        sampler = sampler or d["sampler"]
        if self.guidance_embed and negative is not None:
            raise InputError(f"{self.name} embeds the guidance scale (LCM): a negative prompt has no unconditional "
                             f"branch to go into; expected no negative prompt")
        sigmas = self.sigmas_for(steps)
        rng = np.random.default_rng(seed)
        if latents is None:
            latents = rng.standard_normal((n, *self.latent_shape)).astype(np.float32)
        elif tuple(latents.shape[1:]) != self.latent_shape:
            raise InputError(f"latents of shape {tuple(latents.shape)}; expected [n, "
                             f"{', '.join(map(str, self.latent_shape))}]")
        n = len(latents)
        context = np.repeat(self.encode([prompt]), n, axis=0)
        if self.guidance_embed:
            w = np.full(n, guidance, np.float32)
            den = make_denoiser(self.unet, self.precond, label=context, w=w)
        else:
            den = make_denoiser(self.unet, self.precond, label=context)
            if guidance > 1.0:  # diffusers: classifier-free guidance only above 1
                uncond = np.repeat(self.encode([negative or ""]), n, axis=0)
                den = classifier_free_guidance(den, make_denoiser(self.unet, self.precond, label=uncond), guidance)
        x = latents.astype(np.float64) * (1 + sigmas[0] ** 2) ** 0.5  # VP x_T → σ-space
        callback = _progress(steps) if progress else None
        x = get_sampler(sampler)(den, x, sigmas, noise=noise or (lambda s: rng.standard_normal(s)), callback=callback)
        z = x / (1 + sigmas[-1] ** 2) ** 0.5  # σ-space → the scheduler's last VP latent
        return np.asarray(self.vae_decoder((z / self.scaling_factor).astype(np.float32)), dtype=np.float32)


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"the {what} must be text; got {type(value).__name__}")
    return value


def _progress(steps: int):
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="denoise", unit="step")

    def callback(i, sigma, x, x0):
        bar.update(1)
        if i + 1 >= steps:
            bar.close()

    return callback


def tokenizer_fn(tokenizer, max_length: int, name: str) -> Callable[[list[str]], np.ndarray]:
    """CLIP tokenization as diffusers' encode_prompt does it: pad to max_length, truncate with a warning."""

    def tokenize(prompts: list[str]) -> np.ndarray:
        ids = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True).input_ids
        full = tokenizer(prompts, padding="longest").input_ids
        if any(len(f) > max_length for f in full):
            warnings.warn(f"{name}: the prompt is longer than the text encoder's {max_length} tokens; the end was "
                          f"truncated (as diffusers does)", EdgediffWarning, stacklevel=3)
        return np.asarray(ids, dtype=np.int32)

    return tokenize


def open_folder(path, *, threads: int | None = None) -> TextToImage:
    """The eager pipeline of a local diffusers text-to-image folder (the reference every backend is checked on)."""
    import torch

    from edgediff.models import text_to_image

    if threads:
        torch.set_num_threads(threads)
    return from_parts(text_to_image.load(path))


def from_parts(parts) -> TextToImage:
    """The eager pipeline over loaded `models.text_to_image.TextToImageParts`."""
    from edgediff.models import text_to_image
    from edgediff.models.eager import ModuleRunner

    root = parts.folder.root
    return TextToImage(name=Path(root).resolve().name, path=Path(root), backend="eager",
                       tokenize=tokenizer_fn(parts.tokenizer, parts.max_length, Path(root).name),
                       text_encoder=ModuleRunner(parts.text_encoder), unet=ModuleRunner(parts.unet),
                       vae_decoder=ModuleRunner(parts.vae_decoder), precond=parts.precond,
                       latent_shape=parts.latent_shape, scaling_factor=parts.scaling_factor,
                       guidance_embed=parts.guidance_embed, sampler_defaults=parts.sampler_defaults,
                       sigmas_for=lambda steps: text_to_image.sigmas(parts, steps))


def open_artifact(path, *, manifest: dict | None = None, device=None, threads: int | None = None) -> TextToImage:
    """A pipeline artifact (pipeline.json + one artifact per component) on its components' own backends.

    `device` is one device for every component or {component: device}; the tokenizer is read from the artifact's
    own (hash-checked) files."""
    from edgediff.converters import base
    from edgediff.converters.text_to_image import component_choices
    from edgediff.errors import require
    from edgediff.format import pipeline_manifest
    from edgediff.format.precond import Preconditioning
    from edgediff.runtime.open import static_batch

    path = Path(path)
    m = manifest if manifest is not None else pipeline_manifest.read(path)
    devices = component_choices(device, "device", default=None)
    runners = {}
    for name, c in m["components"].items():
        art_dir = path / c["dir"]
        runner = base.get(c["backend"]).load(art_dir, device=devices[name], threads=threads)
        runners[name] = static_batch(runner, runner.spec[next(iter(runner.spec))][0][0])
    transformers = require("transformers", "diffusers")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(path / m["tokenizer"]["dir"])
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
