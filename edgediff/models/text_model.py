"""The project's own text-to-image denoiser as one trainable module: TinyTextEncoder → cross-attention UNet.

Trained as one network by the generic loop (its `label` is a caption index, looked up in a table of CLIP token ids
that lives only in training), used as two: `text_encoder` (ids → context) and `unet` ((x, t, context) → F), the
components a text-to-image pipeline converts and drives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgediff.format.latent_configs import TextModelConfig
from edgediff.models.text_encoder import TinyTextEncoder
from edgediff.models.unet import UNet


class TextModel(nn.Module):
    """forward(x, t, caption index [B]) = unet(x, t, text_encoder(captions[index])); `set_captions` fills the table."""

    def __init__(self, config: TextModelConfig):
        super().__init__()
        self.config = config
        self.text_encoder = TinyTextEncoder(config.text_encoder)
        self.unet = UNet(config.unet)
        self.register_buffer("captions", torch.zeros(1, config.text_encoder.max_length, dtype=torch.long),
                             persistent=False)

    def set_captions(self, ids) -> None:
        """The token ids [K, max_length] of the training captions; a caption index k reads row k."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.dim() != 2 or ids.shape[1] != self.config.text_encoder.max_length:
            raise ValueError(f"captions must be ids [K, {self.config.text_encoder.max_length}], got "
                             f"{tuple(ids.shape)}")
        self.captions = ids.to(self.captions.device)

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor, w: torch.Tensor | None = None):
        context = self.text_encoder(self.captions[label.long()])
        return self.unet(x, t, context) if w is None else self.unet(x, t, context, w)


def load(path):
    """(TextModel with its trained weights, the model directory's config.json) — safetensors and JSON only."""
    from edgediff.format.jsonfile import read_json
    from edgediff.format.model_dir import check_model_config
    from edgediff.models import checkpoint as ckpt

    path = Path(path)
    meta = check_model_config(read_json(path / ckpt.CONFIG_FILE), str(path / ckpt.CONFIG_FILE))
    net = TextModel(TextModelConfig.from_dict(meta[TextModelConfig.SECTION]))
    ckpt.load_weights(net, path / ckpt.WEIGHTS_FILE)
    return net.eval(), meta


class ContextUNet(nn.Module):
    """The text model's UNet behind the pipeline component signature (x, t, context[, w]) — the names a converted
    UNet component's inputs carry (Core ML binds inputs by name); w, the guidance scale, for a distilled student."""

    def __init__(self, unet: UNet):
        super().__init__()
        self.unet = unet.eval()
        self.cond_dim = 1 if unet.config.guidance_embed else None  # None: classifier-free guidance on the host

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, w: torch.Tensor | None = None):
        return self.unet(x, t, context) if w is None else self.unet(x, t, context, w)


@dataclass(frozen=True, kw_only=True)
class TextModelParts:
    """A trained text-model directory as the three networks a pipeline artifact converts (the same duck type as
    `models.text_to_image.TextToImageParts`): TinyTextEncoder, ContextUNet, the tiny autoencoder's decoder."""

    path: Path
    meta: dict
    text_encoder: nn.Module
    unet: ContextUNet
    vae_decoder: nn.Module
    precond: object  # format.precond.Preconditioning (EDM)
    latent_shape: tuple[int, int, int]
    scaling_factor: float
    max_length: int
    guidance_embed: bool
    sampler_defaults: dict

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name))

    pipeline = "edgediff TextModel"

    @property
    def example_prompts(self) -> tuple[str, ...]:
        """Captions of the model's own data (config.json), which conversion records and calibrates on."""
        found = self.meta.get("example_prompts")
        return tuple(found) if isinstance(found, list) and all(isinstance(t, str) for t in found) else ()

    def sigmas_at(self, steps: int) -> list[float]:
        """The σ list the model's sampler walks at `steps` steps, ending in 0: Karras et al. 2022's schedule for
        the EDM teacher, its consistency form (no σ_min) for a distilled student."""
        from edgediff.sampling.schedules import schedule

        return schedule(self.sampler_defaults.get("sampler", "dpmpp_2m"), steps, sigma_min=self.precond.sigma_min,
                        sigma_max=self.precond.sigma_max)

    def eager(self):
        """The eager text-to-image pipeline over these networks."""
        from edgediff.format.clip_tokenizer import shipped_tokenizer
        from edgediff.models.eager import ModuleRunner
        from edgediff.sampling.text_to_image import TextToImage, tokenizer_fn

        return TextToImage(
            name=self.name, path=self.path, backend="eager",
            tokenize=tokenizer_fn(shipped_tokenizer(max_length=self.max_length), self.max_length, self.path.name),
            text_encoder=ModuleRunner(self.text_encoder), unet=ModuleRunner(self.unet),
            vae_decoder=ModuleRunner(self.vae_decoder), precond=self.precond, latent_shape=self.latent_shape,
            scaling_factor=self.scaling_factor, guidance_embed=self.guidance_embed,
            sampler_defaults=self.sampler_defaults,
            sigmas_for=self.sigmas_at)

    def source(self, component: str) -> dict:
        return {"model": self.path.name, "component": component, "format": self.meta.get("format")}

    def copy_tokenizer(self, dest: Path) -> Path:
        """The CLIP BPE tokenizer the text encoder reads, as a tokenizer/ folder (vocab.json + merges.txt)."""
        from edgediff.format.clip_tokenizer import write_clip_tokenizer

        return write_clip_tokenizer(dest, max_length=self.max_length)


def parts(path) -> TextModelParts:
    """Load a trained text-model directory (safetensors and JSON only) as its pipeline components."""
    from edgediff.format.precond import Preconditioning
    from edgediff.models import autoencoder

    path = Path(path)
    net, meta = load(path)
    ae = autoencoder.load(path / meta.get("autoencoder_dir", "vae"))
    precond = Preconditioning.from_dict(meta["precond"])
    return TextModelParts(path=path, meta=meta, text_encoder=net.text_encoder.eval(), unet=ContextUNet(net.unet),
                          vae_decoder=ae.decoder.eval(), precond=precond, latent_shape=tuple(ae.config.latent_shape),
                          scaling_factor=float(ae.config.scaling_factor),
                          max_length=net.config.text_encoder.max_length,
                          guidance_embed=bool(net.config.unet.guidance_embed),
                          sampler_defaults=dict(meta["sampler_defaults"]))


def eager_pipeline(path):
    """The eager text-to-image pipeline of a trained text-model directory: CLIP tokenizer → TinyTextEncoder →
    cross-attention UNet (EDM, σ from Karras et al. 2022's schedule) → the tiny autoencoder's decoder."""
    return parts(path).eager()
