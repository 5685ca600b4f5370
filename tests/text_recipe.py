"""A tiny version of the shipped openmoji-t2i recipe (a random 16×16 autoencoder, a two-level text UNet): what the
recipe, kill/resume and fine-tuning tests train in seconds. Shared by those tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edgediff.format.latent_configs import AutoencoderConfig
from edgediff.format.model_dir import AUTOENCODER_FORMAT
from edgediff.models import checkpoint
from edgediff.models.autoencoder import TinyAutoencoder

RECIPE = Path(__file__).resolve().parents[1] / "mobile_models" / "openmoji-t2i" / "config.json"


def tiny_autoencoder(path: Path) -> Path:
    """A random 16×16 autoencoder (latents 4×8×8): the recipe only needs its encoder and scaling factor."""
    torch.manual_seed(0)
    cfg = AutoencoderConfig(resolution=16, channels=(8, 16), decoder_channels=(16, 8), scaling_factor=2.0)
    return checkpoint.save(path, TinyAutoencoder(cfg), {"format": AUTOENCODER_FORMAT, "name": "tiny-ae"})


def tiny_recipe(path: Path, autoencoder: Path, steps: int, **training) -> Path:
    """The shipped recipe shrunk to seconds (its own fine-tuning start `init` and lr decay dropped), at `path`."""
    meta = json.loads(RECIPE.read_text())
    meta.pop("init", None)
    meta.pop("training_state", None)
    meta["autoencoder"] = str(autoencoder)
    meta["text_model"]["text_encoder"].update(width=16, layers=1, heads=2)
    meta["text_model"]["unet"].update(resolution=8, channels=[16, 32], attention_levels=[1], time_embed_dim=32,
                                      context_dim=16, groups=8)
    meta["training"].update({"steps": steps, "batch_size": 8, "checkpoint_every": 10, "log_every": 10,
                             "warmup_steps": 5, "decay_steps": 0, "precision": "fp32", "threads": 1, **training})
    path.write_text(json.dumps(meta))
    return path
