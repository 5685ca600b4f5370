"""The project's own text-to-image denoiser as one trainable module: TinyTextEncoder → cross-attention UNet.

Trained as one network by the generic loop (its `label` is a caption index, looked up in a table of CLIP token ids
that lives only in training), used as two: `text_encoder` (ids → context) and `unet` ((x, t, context) → F), the
components a text-to-image pipeline converts and drives.
"""

from __future__ import annotations

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

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, self.text_encoder(self.captions[label.long()]))


def load(path):
    """(TextModel with its trained weights, the model directory's config.json) — safetensors and JSON only."""
    from pathlib import Path

    from edgediff.format.jsonfile import read_json
    from edgediff.format.model_dir import check_model_config
    from edgediff.models import checkpoint as ckpt

    path = Path(path)
    meta = check_model_config(read_json(path / ckpt.CONFIG_FILE), str(path / ckpt.CONFIG_FILE))
    net = TextModel(TextModelConfig.from_dict(meta[TextModelConfig.SECTION]))
    ckpt.load_weights(net, path / ckpt.WEIGHTS_FILE)
    return net.eval(), meta


def eager_pipeline(path):
    """The eager text-to-image pipeline of a trained text-model directory: CLIP tokenizer → TinyTextEncoder →
    cross-attention UNet (EDM, σ from Karras et al. 2022's schedule) → the tiny autoencoder's decoder."""
    from pathlib import Path

    from edgediff.format.clip_tokenizer import shipped_tokenizer
    from edgediff.format.precond import Preconditioning
    from edgediff.models import autoencoder
    from edgediff.models.eager import ModuleRunner
    from edgediff.sampling.schedules import karras_sigmas
    from edgediff.sampling.text_to_image import TextToImage, tokenizer_fn

    path = Path(path)
    net, meta = load(path)
    ae = autoencoder.load(path / meta.get("autoencoder", "vae"))
    precond = Preconditioning(**{k: v for k, v in meta["precond"].items() if k != "kind"})
    length = net.config.text_encoder.max_length
    return TextToImage(
        name=meta.get("name", path.name), path=path, backend="eager",
        tokenize=tokenizer_fn(shipped_tokenizer(max_length=length), length, path.name),
        text_encoder=ModuleRunner(net.text_encoder), unet=ModuleRunner(net.unet), vae_decoder=ModuleRunner(ae.decoder),
        precond=precond, latent_shape=ae.config.latent_shape, scaling_factor=ae.config.scaling_factor,
        guidance_embed=False, sampler_defaults=meta["sampler_defaults"],
        sigmas_for=lambda steps: karras_sigmas(steps, sigma_min=precond.sigma_min, sigma_max=precond.sigma_max))
