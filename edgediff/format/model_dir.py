"""Model directories on disk (config.json + weights.safetensors): where they are and what config.json may say.

A model directory is what `mobile_models/<name>/` holds and what `edgediff train` writes. config.json is read as
JSON only and checked section by section against the config dataclasses (`format.configs`), torch-free; the
weights are read by `models.checkpoint`.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from edgediff.errors import InputError, ModelFileError
from edgediff.format import diffusers_dir, jsonfile, text_to_image_dir
from edgediff.format.configs import Request, TrainConfig, TrainingState, UNetConfig
from edgediff.format.latent_configs import AutoencoderConfig, TextModelConfig
from edgediff.format.precond import Preconditioning
from edgediff.format.schema import _show, section_problems

MODEL_FORMAT, MODEL_FORMAT_VERSION = "edgediff.model", 1
FORMAT, FORMAT_VERSION = MODEL_FORMAT, MODEL_FORMAT_VERSION
AUTOENCODER_FORMAT = "edgediff.autoencoder"  # a tiny autoencoder's directory (same version, "autoencoder" section)
TEXT_MODEL_FORMAT = "edgediff.text_model"  # the project's own text-to-image model ("text_model" section)
NETWORK_FORMATS = {AUTOENCODER_FORMAT: AutoencoderConfig, TEXT_MODEL_FORMAT: TextModelConfig}
DEFAULT_MODEL = "mnist-tiny"
DEFAULT_TEXT_MODEL = "openmoji-t2i"  # what a prompt draws with when no model is named
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"
SECTIONS = {"unet": UNetConfig, "precond": Preconditioning, "training": TrainConfig, "sampler_defaults": Request,
            "training_state": TrainingState}  # config.json sections and the dataclass each one describes


def shipped_models_dir() -> Path:
    return Path(str(resources.files("edgediff.mobile_models")))


def resolve(model: str | os.PathLike) -> Path:
    """'default' or a shipped model's name → its folder in the package; anything else is a path."""
    name = str(model)
    if name == "default":
        name = DEFAULT_MODEL
    shipped = shipped_models_dir() / name
    if "/" not in name and _is_model_dir(shipped):
        return shipped
    path = Path(model)
    if not (path / CONFIG_FILE).is_file() and not diffusers_dir.is_diffusers(path):
        raise ModelFileError(f"model {name!r} not found: expected 'default', a shipped model name "
                             f"({', '.join(list_shipped())}), an edgediff model directory containing {CONFIG_FILE}, "
                             f"{diffusers_dir.SUPPORTED}, or {text_to_image_dir.SUPPORTED}")
    return path


def is_text_model(path) -> bool:
    """True for a directory of the project's own text-to-image model (config.json of format edgediff.text_model)."""
    file = Path(str(path)) / CONFIG_FILE
    if not file.is_file():
        return False
    try:
        return jsonfile.read_json(file).get("format") == TEXT_MODEL_FORMAT
    except (ModelFileError, InputError, AttributeError):
        return False


def prompt_model(model, *, default_text: bool = False) -> Path | None:
    """The folder of a text-to-image model — a shipped text model's name, a text-model directory or a diffusers
    text-to-image folder; 'default' too where `default_text` (a prompt given: DEFAULT_TEXT_MODEL) — or None."""
    name = str(model)
    name = DEFAULT_TEXT_MODEL if name == "default" and default_text else name
    shipped = shipped_models_dir() / name
    if "/" not in name and is_text_model(shipped):
        return shipped
    path = Path(str(model))
    return path if is_text_model(path) or text_to_image_dir.is_text_to_image(path) else None


def list_shipped() -> list[str]:
    return sorted(p.name for p in shipped_models_dir().iterdir() if _is_model_dir(p))


def _is_model_dir(path: Path) -> bool:
    try:
        return json.loads((path / CONFIG_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_config(path: Path) -> dict:
    """Read a model directory's config.json: JSON only, validated by `check_model_config`."""
    return _check_config_file(Path(path) / CONFIG_FILE)


def _check_config_file(file: Path) -> dict:
    meta = check_model_config(jsonfile.read_json(file), str(file))
    try:
        Preconditioning.from_dict(meta.get("precond", {}))
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{file} has an invalid model description: {e}") from None
    return meta


def read_config_source(source: str | os.PathLike) -> dict:
    """The config a training run starts from: a config.json file itself (any name ending in .json), or a model
    directory or shipped model name (its config.json)."""
    path = Path(source)
    if path.suffix == ".json":
        if not path.is_file():
            raise ModelFileError(f"config file {path} does not exist; expected a model config.json")
        return _check_config_file(path)
    return read_config(resolve(source))


MAX_PARAMS = 500_000_000  # a config whose UNet would be larger than this is refused before allocating it


def check_model_config(meta, where: str) -> dict:
    """Validate a model directory's parsed config.json (format, sections, types, ranges, size); return it.

    Sections ("unet", "precond", "training", "sampler_defaults", "training_state") accept only their dataclass's
    fields. Other top-level keys are free-form metadata (names, provenance) and only need to be plain JSON.
    """
    if isinstance(meta, dict) and meta.get("format") in NETWORK_FORMATS:
        return _check_network_config(meta, where, NETWORK_FORMATS[meta["format"]])
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{where} is not an edgediff model config (expected format {MODEL_FORMAT!r})")
    version = meta.get("format_version")
    if version != MODEL_FORMAT_VERSION or isinstance(version, bool):
        raise ModelFileError(f"{where} has format_version {_show(version)}; this edgediff reads version "
                             f"{MODEL_FORMAT_VERSION}")
    if "unet" not in meta:
        raise ModelFileError(f"{where} has no 'unet' section; expected the network's UNetConfig fields")
    problems = [p for section, cls in SECTIONS.items() if section in meta
                for p in section_problems(section, cls, meta[section])]
    for key in ("name", "data"):
        if key in meta and not isinstance(meta[key], str):
            problems.append(f"{key} = {_show(meta[key])}; expected a string")
    if not problems:
        problems = _unet_problems(meta["unet"])
    if problems:
        raise ModelFileError(f"{where} has an invalid model description: " + "; ".join(problems[:4]))
    return meta


def _check_network_config(meta: dict, where: str, config_cls) -> dict:
    """An autoencoder's or text model's config.json: version, its one architecture section, training."""
    if meta.get("format_version") != MODEL_FORMAT_VERSION or isinstance(meta.get("format_version"), bool):
        raise ModelFileError(f"{where} has format_version {_show(meta.get('format_version'))}; this edgediff reads "
                             f"version {MODEL_FORMAT_VERSION}")
    section = config_cls.SECTION
    if section not in meta:
        raise ModelFileError(f"{where} has no {section!r} section; expected the {config_cls.__name__} fields")
    problems = section_problems("training", TrainConfig, meta["training"]) if "training" in meta else []
    if not problems:
        try:
            config_cls.from_dict(meta[section])
        except (InputError, TypeError, ValueError) as e:
            problems = [str(e)]
    if problems:
        raise ModelFileError(f"{where} has an invalid {section.replace('_', ' ')} description: "
                             + "; ".join(problems[:4]))
    return meta


def _unet_problems(unet: dict) -> list[str]:

    channels = unet.get("channels", UNetConfig.channels)
    blocks = unet.get("blocks_per_level", UNetConfig.blocks_per_level)
    if not 1 <= len(channels) <= 8:
        return [f"unet.channels has {len(channels)} levels; expected 1 to 8"]
    estimate = 20 * 9 * blocks * sum(c * c for c in channels)  # ~2 convs down + 3 up per block, 3×3 kernels
    if estimate > MAX_PARAMS:
        return [f"unet would have about {estimate:.2g} parameters; expected at most {MAX_PARAMS:.0e}"]
    try:
        UNetConfig.from_dict(unet)
    except (TypeError, ValueError) as e:
        return [str(e)]
    return []
