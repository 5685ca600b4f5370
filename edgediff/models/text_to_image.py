"""A diffusers text-to-image folder (the Stable Diffusion family) as three exportable networks and what the host
needs to drive them: tokenizer, σ table, prediction type, latent shape, scaling factor, guidance mode.

Each network is an nn.Module with plain tensor inputs and one output, so every backend converts it the way it
converts a pixel-space UNet: `TextEncoder` (int32 ids [B, L] → hidden states [B, L, D]), `CondUNet`
((x_t, t, context[, w]) → ε | v | x0) and `VaeDecoder` (latents [B, C, h, w] → image [B, 3, H, W] in [-1, 1]).
Weights are read from safetensors only; JSON through the hardened reader.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from edgediff.errors import InputError, ModelFileError, require
from edgediff.format import text_to_image_dir
from edgediff.format.clip_tokenizer import load_tokenizer
from edgediff.format.diffusers_dir import SCHEDULER_FILE
from edgediff.format.precond import PREDICTIONS, VPPreconditioning
from edgediff.models.diffusers import SCHEDULERS, build_scheduler, scheduler_sigmas
from edgediff.models.export_friendly import make_export_friendly

STEPS = {"LatentConsistencyModelPipeline": 4}  # recommended steps where a pipeline's scheduler wants few
DEFAULT_STEPS, DEFAULT_GUIDANCE = 20, 7.5
LCM_GUIDANCE = 8.5  # LatentConsistencyModelPipeline's default guidance_scale (embedded, not classifier-free)


class TextEncoder(torch.nn.Module):
    """CLIPTextModel: token ids → last hidden states (what StableDiffusionPipeline.encode_prompt passes on)."""

    def __init__(self, model):
        super().__init__()
        self.model = model.eval()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids.long()).last_hidden_state


class CondUNet(torch.nn.Module):
    """UNet2DConditionModel behind the Runner signature (x, t, context[, w]); `w` (guidance scale) feeds an LCM's
    guidance embedding (Luo et al. 2023: timestep_cond from w − 1)."""

    def __init__(self, unet):
        super().__init__()
        make_export_friendly(unet)
        self.unet = unet.eval()
        self.cond_dim = unet.config.time_cond_proj_dim

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, w: torch.Tensor | None = None):
        cond = None if self.cond_dim is None else guidance_embedding(w, self.cond_dim)
        return self.unet(x, t, encoder_hidden_states=context, timestep_cond=cond, return_dict=False)[0]


def guidance_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """diffusers' LCM guidance-scale embedding of w − 1 (sinusoidal, Vaswani et al. 2017), traceable."""
    w = (w.float() - 1.0) * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    emb = w[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    return torch.nn.functional.pad(emb, (0, 1)) if dim % 2 else emb


class VaeDecoder(torch.nn.Module):
    """The VAE's decoder (AutoencoderKL or AutoencoderTiny): latents / scaling factor → image in [-1, 1]."""

    def __init__(self, vae):
        super().__init__()
        make_export_friendly(vae)
        self.vae = vae.eval()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z, return_dict=False)[0]


@dataclass(frozen=True, kw_only=True)
class TextToImageParts:
    """A loaded text-to-image folder: the three networks, the tokenizer and the host-side facts."""

    folder: text_to_image_dir.TextToImageFolder
    tokenizer: object  # transformers CLIPTokenizer
    text_encoder: TextEncoder
    unet: CondUNet
    vae_decoder: VaeDecoder
    scheduler: object  # the diffusers scheduler (its config is recorded; σ lists at any step count come from it)
    precond: VPPreconditioning
    latent_shape: tuple[int, int, int]
    scaling_factor: float
    max_length: int
    guidance_embed: bool  # True: guidance is an input of the UNet (LCM), else classifier-free guidance
    sampler_defaults: dict
    final_sigma: float  # σ the scheduler's last step lands on (0, or ᾱ_0's σ when set_alpha_to_one is False)

    @property
    def name(self) -> str:
        return self.folder.root.name

    @property
    def pipeline(self) -> str:
        return self.folder.pipeline

    @property
    def example_prompts(self) -> tuple[str, ...]:
        return ()  # a diffusers folder names none: conversion records the components' inputs on its own prompts

    def sigmas_at(self, steps: int) -> list[float]:
        return sigmas(self, steps)

    def eager(self):
        return eager_pipeline(self)

    def source(self, component: str) -> dict:
        """Provenance of one component for its artifact."""
        source = {"model": self.folder.root.name, "component": component}
        if component == "vae_decoder" and self.folder.decoder is not None:
            source.update(decoder=self.folder.decoder.resolve().name, decoder_class=self.folder.classes["vae"])
        return source

    def copy_tokenizer(self, dest: Path) -> Path:
        """The folder's tokenizer files (JSON and text only) copied into `dest`."""
        import shutil

        dest.mkdir(parents=True, exist_ok=True)
        for f in sorted((self.folder.root / "tokenizer").iterdir()):
            if f.is_file() and f.suffix in (".json", ".txt"):
                shutil.copyfile(f, dest / f.name)
        return dest


def load(path, *, decoder=None) -> TextToImageParts:
    """Load a local text-to-image folder (safetensors weights only) or raise naming what is expected; `decoder`: a
    separate AutoencoderTiny / AutoencoderKL folder decoding instead of the folder's vae/."""
    folder = text_to_image_dir.locate(path, decoder=decoder)
    diffusers = require("diffusers", "diffusers")
    transformers = require("transformers", "diffusers")
    with _quiet(diffusers), _quiet(transformers):
        return _load(folder, diffusers, transformers)


def _load(folder, diffusers, transformers) -> TextToImageParts:
    root = folder.root
    tokenizer = _read("tokenizer", lambda: load_tokenizer(root / "tokenizer"))
    encoder = _read("text_encoder", lambda: transformers.CLIPTextModel.from_pretrained(
        root / "text_encoder", use_safetensors=True, attn_implementation="eager"))  # matmul attention: no SDPA
    unet = _read("unet", lambda: diffusers.UNet2DConditionModel.from_pretrained(
        root / "unet", use_safetensors=True, low_cpu_mem_usage=False))
    vae = _read("vae", lambda: getattr(diffusers, folder.classes["vae"]).from_pretrained(
        folder.part("vae"), use_safetensors=True, low_cpu_mem_usage=False))
    scheduler = build_scheduler(diffusers, root / "scheduler" / SCHEDULER_FILE)
    prediction = scheduler.config.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise InputError(f"{root / 'scheduler'}: prediction_type {prediction!r}; expected one of {PREDICTIONS}")
    ac = scheduler.alphas_cumprod.double()
    precond = VPPreconditioning.from_table(((1 - ac) / ac).sqrt().tolist(), prediction=prediction)
    embed = unet.config.time_cond_proj_dim is not None
    steps = STEPS.get(folder.pipeline, DEFAULT_STEPS)
    defaults = {"sampler": SCHEDULERS[type(scheduler).__name__], "steps": steps,
                "guidance": LCM_GUIDANCE if embed else DEFAULT_GUIDANCE}
    size = unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    return TextToImageParts(
        folder=folder, tokenizer=tokenizer, text_encoder=TextEncoder(encoder), unet=CondUNet(unet),
        vae_decoder=VaeDecoder(vae), scheduler=scheduler, precond=precond,
        latent_shape=(unet.config.in_channels, size, size),
        scaling_factor=float(getattr(vae.config, "scaling_factor", 1.0) or 1.0),
        max_length=int(tokenizer.model_max_length), guidance_embed=embed, sampler_defaults=defaults,
        final_sigma=final_sigma(scheduler))


def eager_pipeline(parts: TextToImageParts):
    """The eager pipeline over loaded `models.text_to_image.TextToImageParts`."""
    from edgediff.models.eager import ModuleRunner
    from edgediff.sampling.text_to_image import TextToImage, tokenizer_fn

    root = parts.folder.root
    return TextToImage(name=Path(root).resolve().name, path=Path(root), backend="eager",
                       tokenize=tokenizer_fn(parts.tokenizer, parts.max_length, Path(root).name),
                       text_encoder=ModuleRunner(parts.text_encoder), unet=ModuleRunner(parts.unet),
                       vae_decoder=ModuleRunner(parts.vae_decoder), precond=parts.precond,
                       latent_shape=parts.latent_shape, scaling_factor=parts.scaling_factor,
                       guidance_embed=parts.guidance_embed, sampler_defaults=parts.sampler_defaults,
                       sigmas_for=lambda steps: sigmas(parts, steps))


def sigmas(parts: TextToImageParts, steps: int) -> list[float]:
    """The σ the folder's scheduler visits at `steps` steps, ending where its last step lands."""
    out = scheduler_sigmas(parts.scheduler, parts.precond, steps)
    return [*out[:-1], parts.final_sigma]


def final_sigma(scheduler) -> float:
    """DDIM/PNDM with set_alpha_to_one=False end at ᾱ_0 (σ ≈ 0.03 for SD), not at the clean image."""
    final = getattr(scheduler, "final_alpha_cumprod", None)
    if final is None or getattr(scheduler, "sigmas", None) is not None:
        return 0.0
    a = float(final)
    return 0.0 if a >= 1.0 else ((1 - a) / a) ** 0.5


@contextlib.contextmanager
def _quiet(library):
    """A Hugging Face library's per-load progress bars and notices (diffusers: "Unable to import `torchao`"), off
    while the folder loads, then as before."""
    log = library.utils.logging
    bar, level = log.is_progress_bar_enabled(), log.get_verbosity()
    log.disable_progress_bar()
    log.set_verbosity_error()
    try:
        yield
    finally:
        log.set_verbosity(level)
        if bar:
            log.enable_progress_bar()


def _read(name: str, build):
    try:
        return build()
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as e:
        reason = (str(e).splitlines() or [""])[0][:160]
        raise ModelFileError(f"{name}: unreadable ({type(e).__name__}: {reason}); expected the folder "
                             f"save_pretrained writes") from None
