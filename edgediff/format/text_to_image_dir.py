"""What a local diffusers text-to-image folder is, read from its JSON only (torch-free): a Stable Diffusion-family
pipeline (`model_index.json` + `text_encoder/`, `tokenizer/`, `unet/` (UNet2DConditionModel), `vae/`, `scheduler/`).

Every shape of text-to-image folder edgediff does not read gets a one-line ModelFileError saying what it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgediff.errors import ModelFileError
from edgediff.format.diffusers_dir import INDEX_FILE, SCHEDULER_FILE, WEIGHTS, read_json, read_scheduler

PIPELINES = ("StableDiffusionPipeline", "LatentConsistencyModelPipeline")
SUPPORTED = ("a diffusers text-to-image pipeline folder (model_index.json of a StableDiffusionPipeline or "
             "LatentConsistencyModelPipeline with text_encoder/ (CLIPTextModel), tokenizer/ (CLIPTokenizer), unet/ "
             "(UNet2DConditionModel), vae/ (AutoencoderKL or AutoencoderTiny) and scheduler/, as save_pretrained "
             "writes it)")
PARTS = {  # component: (file it must hold, weights file, classes read)
    "text_encoder": ("config.json", "model.safetensors", ("CLIPTextModel",)),
    "tokenizer": ("tokenizer_config.json", None, ("CLIPTokenizer", "CLIPTokenizerFast")),
    "unet": ("config.json", WEIGHTS, ("UNet2DConditionModel",)),
    "vae": ("config.json", WEIGHTS, ("AutoencoderKL", "AutoencoderTiny")),
    "scheduler": (SCHEDULER_FILE, None, None),
}
COMPONENT_FOLDERS = {"text_encoder": "text_encoder", "unet": "unet", "vae_decoder": "vae"}  # artifact part → folder
NOT_YET = {"text_encoder_2": "SDXL-style pipelines (two text encoders) are not supported yet",
           "transformer": "transformer (DiT / MMDiT) denoisers are not supported yet",
           "prior": "prior pipelines are not supported yet"}


@dataclass(frozen=True, kw_only=True)
class TextToImageFolder:
    """Where a diffusers text-to-image pipeline's parts are, and what they are."""

    root: Path
    pipeline: str  # model_index.json's _class_name
    classes: dict  # component → its class name in model_index.json (vae: the decoder's, when one is given)
    decoder: Path | None = None  # a separate VAE / AutoencoderTiny folder standing in for vae/

    def part(self, name: str) -> Path:
        return self.decoder if name == "vae" and self.decoder is not None else self.root / name


def is_text_to_image(path) -> bool:
    """True when `path` is a diffusers pipeline folder whose index names a text encoder (read or not)."""
    index = Path(path) / INDEX_FILE
    if not index.is_file():
        return False
    try:
        parts = read_json(index)
    except ModelFileError:
        return False
    return any(_named(parts.get(k)) for k in ("text_encoder", "text_encoder_2", "tokenizer"))


def locate(path, *, decoder=None) -> TextToImageFolder:
    """The parts of a text-to-image folder, checked on disk, or a ModelFileError naming what is expected.

    `decoder`: a separate AutoencoderTiny (TAESD) or AutoencoderKL folder that decodes instead of the folder's vae/
    (as `pipe.vae = AutoencoderTiny.from_pretrained(...)` does in diffusers)."""
    path = Path(path)
    index = read_json(path / INDEX_FILE)
    cls = index.get("_class_name")
    for key, why in NOT_YET.items():
        if _named(index.get(key)):
            raise ModelFileError(f"{path} is a {cls} with {key}: {why}; expected {SUPPORTED}")
    if cls not in PIPELINES:
        raise ModelFileError(f"{path} is a {cls!r}; expected {SUPPORTED}")
    classes = {}
    for name, (must, weights, known) in PARTS.items():
        entry = index.get(name)
        if not _named(entry):
            raise ModelFileError(f"{path}/{INDEX_FILE} names no {name}; expected {SUPPORTED}")
        if known is not None and entry[1] not in known:
            raise ModelFileError(f"{path}/{INDEX_FILE}: {name} is a {entry[1]}; expected one of {', '.join(known)}")
        folder = path / name
        if not (folder / must).is_file():
            raise ModelFileError(f"{folder} has no {must}; expected the {name} folder save_pretrained writes")
        if weights is not None:
            _check_weights(folder, weights)
        classes[name] = entry[1]
    tok = path / "tokenizer"
    if not ((tok / "tokenizer.json").is_file() or ((tok / "vocab.json").is_file() and (tok / "merges.txt").is_file())):
        raise ModelFileError(f"{tok} has neither tokenizer.json nor vocab.json + merges.txt; expected a CLIP BPE "
                             f"tokenizer's files")
    read_scheduler(path / "scheduler" / SCHEDULER_FILE)  # an unsupported scheduler fails before any weights load
    if decoder is not None:
        decoder = Path(decoder)
        classes["vae"] = _decoder_class(decoder, read_json(path / "unet" / "config.json").get("in_channels"))
    return TextToImageFolder(root=path, pipeline=cls, classes=classes, decoder=decoder)


def _decoder_class(folder: Path, latent_channels) -> str:
    """The class of a separate decoder folder, checked: one of PARTS' vae classes, its latents the UNet's."""
    known = PARTS["vae"][2]
    expected = (f"expected a folder save_pretrained writes for one of {', '.join(known)} (config.json + {WEIGHTS}), "
                f"e.g. TAESD")
    if not (folder / "config.json").is_file():
        raise ModelFileError(f"decoder {folder} has no config.json; {expected}")
    config = read_json(folder / "config.json")
    cls = config.get("_class_name")
    if cls not in known:
        raise ModelFileError(f"decoder {folder} is a {cls!r}; {expected}")
    _check_weights(folder, WEIGHTS)
    if config.get("latent_channels", 4) != latent_channels:
        raise ModelFileError(f"decoder {folder} takes {config.get('latent_channels', 4)}-channel latents; the UNet "
                             f"makes {latent_channels}: expected a decoder of the same latent space")
    return cls


def _named(entry) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and entry[1] is not None


def _check_weights(folder: Path, weights: str) -> None:
    if (folder / weights).is_file():
        return
    stem = weights.split(".")[0]
    found = sorted(p.name for p in folder.glob(f"{stem}*"))
    if any(".safetensors" in f for f in found):
        hint = f"found {', '.join(found)}; sharded or variant weights are not read yet, expected one {weights}"
    elif found:
        hint = (f"found {', '.join(found)}; only {weights} is read (pickled .bin weights never are: re-save with "
                f"save_pretrained(..., safe_serialization=True))")
    else:
        hint = f"expected {weights}"
    raise ModelFileError(f"{folder} has no {weights}: {hint}")
