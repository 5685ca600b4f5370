"""Training the project's own text-to-image model: latent diffusion (Rombach et al. 2022) on the tiny autoencoder's
latents, EDM loss (Karras et al. 2022) through the generic resumable loop, the text encoder trained with the UNet,
captions dropped to "" at `training.label_dropout` so one network is both branches of classifier-free guidance
(Ho & Salimans 2022).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from edgediff.errors import InputError
from edgediff.format.configs import TrainConfig
from edgediff.format.files import atomic_path
from edgediff.format.latent_configs import TextModelConfig
from edgediff.format.model_dir import TEXT_MODEL_FORMAT, shipped_models_dir
from edgediff.format.precond import Preconditioning
from edgediff.models import checkpoint as ckpt
from edgediff.models.text_model import TextModel
from edgediff.training import autoencode, emoji
from edgediff.training.batch import Batch, LossFn
from edgediff.training.data import ImageData
from edgediff.training.edm import edm
from edgediff.training.loop import run

AUTOENCODER_DIR = "vae"  # the autoencoder travels inside the model directory ("autoencoder" names its source)
WEIGHTS_DTYPES = ("float32", "float16", "bfloat16")  # how the exported weights are stored (fp16: half the MB)
DEFAULT_SAMPLER = {"sampler": "dpmpp_2m", "steps": 20, "guidance": 3.0}


def caption_dropout(base: LossFn, *, p: float, empty: int) -> LossFn:
    """`base` with each caption index replaced by `empty` (the "" caption's row) with probability p."""

    def loss(b: Batch) -> torch.Tensor:
        drop = b.rand() < p
        return base(dataclasses.replace(b, label=torch.where(drop, torch.full_like(b.label, empty), b.label)))

    return loss


def resolve_autoencoder(ref) -> Path:
    """A shipped autoencoder's name ("openmoji-ae") or a directory path."""
    shipped = shipped_models_dir() / str(ref)
    path = shipped if "/" not in str(ref) and (shipped / ckpt.CONFIG_FILE).is_file() else Path(ref)
    if not (path / ckpt.CONFIG_FILE).is_file():
        raise InputError(f"autoencoder {ref!r} not found: expected a shipped autoencoder name (openmoji-ae) or a "
                         f"directory trained by `edgediff train` from an edgediff.autoencoder config")
    return path


def captions(data: emoji.CaptionedImages, subgroup) -> tuple[list[str], np.ndarray]:
    """(caption per training row, image index per row): CLDR names, names + subgroup ("red apple, food fruit"),
    or "both" (every image twice, once with each caption, so short prompts and subgroup prompts both work)."""
    if subgroup not in (False, True, "both"):
        raise InputError(f"caption_subgroup = {subgroup!r}; expected false, true or \"both\"")
    forms = [False, True] if subgroup == "both" else [bool(subgroup)]
    texts = [data.prompt(i, subgroup=f) for f in forms for i in range(len(data))]
    return texts, np.tile(np.arange(len(data)), len(forms))


def tokenize(tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    return np.asarray(tokenizer(texts, padding="max_length", max_length=max_length, truncation=True).input_ids,
                      dtype=np.int64)


@torch.no_grad()
def latents(ae, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """encode(images) · scaling_factor, the space the denoiser learns."""
    z = [ae.encode(torch.from_numpy(images[i:i + batch])) for i in range(0, len(images), batch)]
    return (torch.cat(z) * ae.config.scaling_factor).numpy().astype(np.float32)


def captioned_latents(ae_dir: Path, config: TextModelConfig, subgroup) -> tuple[np.ndarray, np.ndarray, ImageData]:
    """(token ids of every training caption + "" last, their distinct token ids, the training set: latents of the
    emoji training split with each row's caption index as its label) — what the recipe and distillation learn."""
    from edgediff.format.clip_tokenizer import shipped_tokenizer

    ae = autoencode.load(ae_dir)
    if ae.config.latent_shape != (config.unet.in_channels, config.unet.resolution, config.unet.resolution):
        raise InputError(f"the autoencoder's latents are {list(ae.config.latent_shape)} but the UNet takes "
                         f"[{config.unet.in_channels}, {config.unet.resolution}, {config.unet.resolution}]")
    train, _ = emoji.split(emoji.load(resolution=ae.config.resolution))
    texts, images = captions(train, subgroup)
    tokenizer = shipped_tokenizer(max_length=config.text_encoder.max_length)
    ids = tokenize(tokenizer, [*texts, ""], config.text_encoder.max_length)
    vocab = np.unique(ids)
    if len(vocab) + 1 > config.text_encoder.vocab_size:
        raise InputError(f"the training captions use {len(vocab)} distinct tokens; text_encoder.vocab_size must be "
                         f"at least {len(vocab) + 1} (got {config.text_encoder.vocab_size})")
    z = latents(ae, train.images)[images]
    return ids, vocab, ImageData(z, np.arange(len(texts), dtype=np.int64), tuple(texts))


def fit_config(meta: dict, out: Path, *, resume: bool = True, progress: bool = True, device: str = "cpu",
               **overrides) -> Path:
    """Train the text model an "edgediff.text_model" config describes on the emoji training split's latents."""
    try:
        config = TextModelConfig.from_dict(meta["text_model"])
        cfg = TrainConfig(**{**meta.get("training", {}), **{k: v for k, v in overrides.items() if v is not None}})
        precond = Preconditioning(**{k: v for k, v in meta.get("precond", {}).items() if k != "kind"})
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"invalid text model config: {e}") from None
    if meta.get("weights_dtype", "float32") not in WEIGHTS_DTYPES:
        raise InputError(f"weights_dtype {meta['weights_dtype']!r}; expected one of {', '.join(WEIGHTS_DTYPES)}")
    if cfg.data != "openmoji":
        raise InputError(f"a text model trains on captioned images; data {cfg.data!r} has no captions (expected "
                         f"'openmoji')")
    ae_dir = resolve_autoencoder(meta.get("autoencoder", "openmoji-ae"))
    ids, vocab, data = captioned_latents(ae_dir, config, meta.get("caption_subgroup", False))
    torch.manual_seed(cfg.seed)
    net = TextModel(config)
    net.text_encoder.set_vocabulary(vocab.tolist())
    net.set_captions(ids)
    if meta.get("init") is not None:
        _initialise(net, meta["init"], config)
    keep = {k: meta[k] for k in ("licence", "attribution", "caption_subgroup", "weights_dtype", "example_prompts",
                                 "init")
            if k in meta}
    record = {"format": TEXT_MODEL_FORMAT, "name": meta.get("name", Path(out).name), "data": cfg.data,
              "training": asdict(cfg), "precond": precond.to_dict(),
              "autoencoder": str(meta.get("autoencoder", "openmoji-ae")), "autoencoder_dir": AUTOENCODER_DIR,
              "sampler_defaults": meta.get("sampler_defaults", DEFAULT_SAMPLER), **keep}
    loss = caption_dropout(edm(precond, cfg), p=cfg.label_dropout, empty=len(ids) - 1)
    out = run(net, dataclasses.replace(cfg, label_dropout=0.0), out, data=data, loss=loss, meta=record,
              resume=resume, progress=progress, device=device)
    copy_autoencoder(ae_dir, Path(out) / AUTOENCODER_DIR)
    return out


def _initialise(net: TextModel, ref, config: TextModelConfig) -> None:
    """Start from a trained text model's weights (fine-tuning: a shipped name or a directory) of the same
    architecture and caption vocabulary; the optimizer and the schedule start fresh."""
    from edgediff.format.model_dir import is_text_model, read_config

    shipped = shipped_models_dir() / str(ref)
    path = shipped if "/" not in str(ref) and is_text_model(shipped) else Path(ref)
    if not is_text_model(path) or not (path / ckpt.WEIGHTS_FILE).is_file():
        raise InputError(f"init {ref!r} is not a trained text model: expected a shipped text model's name "
                         f"(openmoji-t2i) or a directory written by `edgediff train` from an edgediff.text_model "
                         f"config")
    if read_config(path).get(TextModelConfig.SECTION) != json.loads(json.dumps(config.to_dict())):
        raise InputError(f"init {ref!r} has a different text_model architecture than this config; fine-tuning "
                         f"needs the same text_encoder and unet sections")
    vocabulary = net.text_encoder.token_map.clone()
    ckpt.load_weights(net, path / ckpt.WEIGHTS_FILE)
    if not torch.equal(vocabulary, net.text_encoder.token_map):
        raise InputError(f"init {ref!r} was trained on other captions (its token vocabulary differs); expected a "
                         f"model trained on the same data and caption_subgroup")


def copy_autoencoder(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in (ckpt.CONFIG_FILE, ckpt.WEIGHTS_FILE):
        if src.resolve() != dest.resolve():
            with atomic_path(dest / name) as tmp:
                shutil.copyfile(src / name, tmp)
