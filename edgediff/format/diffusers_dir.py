"""What a local diffusers folder is, read from its JSON only (torch-free): a pixel-space pipeline folder
(`model_index.json` + `unet/` + `scheduler/`) or a bare `UNet2DModel` folder, and where its scheduler is.

Every shape of folder edgediff does not read gets a one-line ModelFileError that says what it does read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgediff.errors import EdgediffError, InputError, ModelFileError
from edgediff.format import jsonfile

INDEX_FILE, CONFIG_FILE, SCHEDULER_FILE = "model_index.json", "config.json", "scheduler_config.json"
# the VP schedulers (a betas table) edgediff reads, and the sampler each one maps to
SCHEDULERS = {"DDIMScheduler": "euler", "EulerDiscreteScheduler": "euler", "HeunDiscreteScheduler": "heun",
              "DPMSolverMultistepScheduler": "dpmpp_2m", "DDPMScheduler": "dpmpp_2m", "PNDMScheduler": "dpmpp_2m",
              "EulerAncestralDiscreteScheduler": "euler_ancestral", "DPMSolverSinglestepScheduler": "dpmpp_2m",
              "UniPCMultistepScheduler": "dpmpp_2m", "LMSDiscreteScheduler": "dpmpp_2m",
              "LCMScheduler": "lcm"}
WEIGHTS = "diffusion_pytorch_model.safetensors"
UNET_CLASS = "UNet2DModel"
SUPPORTED = ("a diffusers pixel-space pipeline folder (model_index.json naming a UNet2DModel unet/ and a scheduler/, "
             "e.g. DDPMPipeline, DDIMPipeline, PNDMPipeline) or a UNet2DModel folder (config.json + "
             f"{WEIGHTS})")
LATENT_PARTS = ("vae", "vqvae", "text_encoder", "transformer")  # components of pipelines edgediff does not read yet


@dataclass(frozen=True, kw_only=True)
class DiffusersFolder:
    """Where a diffusers pixel-space model's parts are."""

    root: Path  # what the user pointed at
    unet: Path  # the UNet2DModel folder (config.json + weights)
    scheduler: Path | None  # the folder holding scheduler_config.json, None when there is none
    pipeline: str | None  # model_index.json's _class_name, None for a bare UNet folder


def is_diffusers(path) -> bool:
    """True when `path` looks like a diffusers folder of any kind (so it gets diffusers' messages, not ours)."""
    path = Path(path)
    return (path / INDEX_FILE).is_file() or _class_name(path / CONFIG_FILE) is not None \
        or (path / SCHEDULER_FILE).is_file()


def locate(path) -> DiffusersFolder:
    """The parts of a diffusers folder edgediff reads, or a ModelFileError naming what is expected."""
    path = Path(path)
    if (path / INDEX_FILE).is_file():
        return _pipeline(path)
    name = _class_name(path / CONFIG_FILE)
    if name is None and (path / SCHEDULER_FILE).is_file():
        raise ModelFileError(f"{path} holds only a scheduler config; expected {SUPPORTED}")
    if name != UNET_CLASS:
        raise ModelFileError(f"{path} is a diffusers {name}, not a UNet2DModel; expected {SUPPORTED}")
    _check_weights(path)
    scheduler = next((d for d in (path, path.parent / "scheduler") if (d / SCHEDULER_FILE).is_file()), None)
    return DiffusersFolder(root=path, unet=path, scheduler=scheduler, pipeline=None)


def _pipeline(path: Path) -> DiffusersFolder:
    index = read_json(path / INDEX_FILE)
    cls = index.get("_class_name", "an unnamed pipeline")
    parts = {k: v for k, v in index.items() if not k.startswith("_")}
    latent = [p for p in LATENT_PARTS if parts.get(p) and parts[p] != [None, None]]
    if "text_encoder" in latent:
        raise ModelFileError(f"{path} is a {cls} (text-to-image): `edgediff convert`, `sample --prompt` and `info` "
                             f"read it, this verb does not yet; it expects {SUPPORTED}")
    if latent:
        raise ModelFileError(f"{path} is a {cls} with {', '.join(latent)}: latent pipelines without a text encoder "
                             f"are not read; expected {SUPPORTED}")
    unet = parts.get("unet")
    if not isinstance(unet, list) or len(unet) != 2 or unet[1] != UNET_CLASS:
        raise ModelFileError(f"{path}/{INDEX_FILE} ({cls}) names unet {unet!r}; expected {SUPPORTED}")
    if not (path / "unet" / CONFIG_FILE).is_file():
        raise ModelFileError(f"{path}/{INDEX_FILE} names a unet but {path / 'unet'} has no {CONFIG_FILE}; "
                             f"expected the folder save_pretrained writes")
    _check_weights(path / "unet")
    scheduler = path / "scheduler"
    if parts.get("scheduler") and not (scheduler / SCHEDULER_FILE).is_file():
        raise ModelFileError(f"{path}/{INDEX_FILE} names a scheduler but {scheduler} has no {SCHEDULER_FILE}")
    return DiffusersFolder(root=path, unet=path / "unet", scheduler=scheduler if parts.get("scheduler") else None,
                           pipeline=cls)


def _check_weights(unet: Path) -> None:
    if (unet / WEIGHTS).is_file():
        return
    found = sorted(p.name for p in unet.glob("diffusion_pytorch_model*"))
    hint = (f"found {', '.join(found)}; only {WEIGHTS} is read (pickled .bin weights never are: re-save with "
            f"save_pretrained(..., safe_serialization=True))") if found else f"expected {WEIGHTS}"
    raise ModelFileError(f"{unet} has no {WEIGHTS}: {hint}")


def _class_name(file: Path) -> str | None:
    if not file.is_file():
        return None
    try:
        name = jsonfile.read_json(file, allow_nan=True).get("_class_name")
    except (EdgediffError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def read_json(file: Path) -> dict:
    """A diffusers JSON file through the hardened reader (size, depth, plain data; NaN allowed as diffusers writes
    it for unset floats)."""
    try:
        data = jsonfile.read_json(file, allow_nan=True)
    except EdgediffError as e:
        raise ModelFileError(f"{e}; expected a diffusers {file.name}") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{file} holds {type(data).__name__}; expected a JSON object")
    return data


def read_scheduler(file: Path) -> tuple[str, dict]:
    """A scheduler_config.json's class name and dict, or a one-line InputError when edgediff does not read it."""
    config = read_json(file)
    name = config.get("_class_name")
    if name not in SCHEDULERS:
        raise InputError(f"{file}: scheduler {name!r} is not supported; expected one of {', '.join(SCHEDULERS)} "
                         f"(VP schedules with a betas table)")
    return name, config
