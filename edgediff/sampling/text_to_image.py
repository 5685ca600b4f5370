"""Prompt → image with the one host sampler: tokenizer → text encoder → UNet steps in σ-space → VAE decoder.

The networks are Runners (eager torch here; backend artifacts alike), the diffusion maths is host-side numpy: the
UNet's `label` slot carries the text embedding, classifier-free guidance (Ho & Salimans 2022) is a Denoiser
wrapper with the negative prompt (or "") as the unconditional branch, both branches in one batch as diffusers
runs them (the UNet artifact's static batch decides whether that is one call or two).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.errors import EdgediffWarning, InputError
from edgediff.format.precond import Preconditioning, VPPreconditioning
from edgediff.sampling.denoiser import make_denoiser
from edgediff.sampling.guidance import paired_guidance
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
    precond: Preconditioning  # VPPreconditioning for diffusers folders (VP latents), EDM's for the project's own
    latent_shape: tuple[int, int, int]
    scaling_factor: float
    guidance_embed: bool
    sampler_defaults: dict
    sigmas_for: Callable[[int], list[float]]  # the scheduler's σ list at n steps

    def encode(self, prompts: list[str]) -> np.ndarray:
        return np.asarray(self.text_encoder(self.tokenize(prompts)), dtype=np.float32)

    def generate(self, *, prompt, negative_prompt=None, n: int = 1, seed: int = 0, steps: int | None = None,
                 guidance: float | None = None, sampler: str | None = None, gamma: float | None = None,
                 latents: np.ndarray | None = None,
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
        if gamma is None and sampler == d["sampler"]:
            gamma = d.get("gamma")  # the tcd sampler's γ the model recommends
        if gamma is not None and sampler != "tcd":
            raise InputError(f"gamma is the tcd sampler's γ; the sampler is {sampler!r} (expected sampler 'tcd')")
        extra = {"gamma": float(gamma)} if gamma is not None else {}
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
            if guidance > 1.0:  # diffusers: classifier-free guidance only above 1, both branches in one batch
                uncond = np.repeat(self.encode([negative or ""]), n, axis=0)
                pair = make_denoiser(self.unet, self.precond, label=np.concatenate([uncond, context]))
                den = paired_guidance(pair, guidance)
        vp = isinstance(self.precond, VPPreconditioning)  # VP latents (diffusers) or EDM's σ-space ones
        x = latents.astype(np.float64) * ((1 + sigmas[0] ** 2) ** 0.5 if vp else sigmas[0])  # x_T → σ-space
        callback = _progress(steps) if progress else None
        x = get_sampler(sampler)(den, x, sigmas, noise=noise or (lambda s: rng.standard_normal(s)), callback=callback,
                                **extra)
        z = x / (1 + sigmas[-1] ** 2) ** 0.5 if vp else x  # σ-space → the scheduler's last VP latent
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
