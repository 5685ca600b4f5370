"""Bring your own model: a local diffusers pixel-space pipeline or `UNet2DModel` folder as a model directory.

The UNet runs as it was trained (ε, v or x0 output, unconditional or class-conditional); the scheduler's ᾱ table
becomes the VP preconditioning (Karras et al. 2022, Table 1) the one host sampler drives, so every verb that takes
an edgediff model directory takes a diffusers folder too. Weights are read from safetensors only.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgediff.errors import EdgediffWarning, InputError, ModelFileError, require
from edgediff.format import diffusers_dir
from edgediff.format.configs import UNetConfig
from edgediff.format.diffusers_dir import SCHEDULERS
from edgediff.format.precond import PREDICTIONS, VPPreconditioning
from edgediff.models.export_friendly import make_export_friendly

# scheduler class → the host sampler that integrates the same ODE (DDIM = Euler in σ-space, Song et al. 2021)
DEFAULT_SCHEDULER = "DDPMScheduler"  # what diffusers' DDPMPipeline trains with; assumed (and said) when none is found
STEPS = 20  # recommended steps: the scheduler's own timesteps at this count
CLASS_EMBEDS = (None, "timestep")  # class_embed_type values that take integer class ids


@dataclass(frozen=True, kw_only=True)
class DiffusersConfig:
    """What edgediff needs to know of a UNet2DModel (the fields its own UNetConfig shares) + the diffusers config."""

    resolution: int
    in_channels: int
    out_channels: int
    num_classes: int = 0
    guidance_embed: bool = False
    diffusers: dict = field(default_factory=dict)

    @property
    def null_label(self) -> int:
        return self.num_classes  # never drawn: a diffusers UNet is distilled without label dropout

    def to_dict(self) -> dict:
        return {"diffusers": dict(self.diffusers)}


class DiffusersUNet(torch.nn.Module):
    """A UNet2DModel behind the Runner signature (x, t[, label]) → its own output (ε, v or x0)."""

    has_null_label = False  # its class ids are 0..num_class_embeds-1, with no "no label" class

    def __init__(self, unet, config: DiffusersConfig):
        super().__init__()
        make_export_friendly(unet)
        self.unet, self.config = unet, config

    def forward(self, x, t, label=None):
        return self.unet(x, t, class_labels=label if self.config.num_classes else None).sample


def from_config(config: dict) -> DiffusersUNet:
    """A random-weight network of the architecture an artifact records (`DiffusersConfig.to_dict()`)."""
    diffusers = require("diffusers", "diffusers")
    unet = diffusers.UNet2DModel.from_config(config["diffusers"]).eval()
    return DiffusersUNet(unet, _config(unet.config, Path("(artifact config)"))).eval()


def student_config(teacher: DiffusersConfig) -> UNetConfig:
    """An edgediff UNet of the teacher's shape (levels, widths, attention levels, classes) for distillation, with a
    guidance input only where the teacher can be guided (never: diffusers UNets have no null class)."""
    c = teacher.diffusers
    widths = tuple(int(w) for w in c.get("block_out_channels", (32, 64, 64)))
    attention = tuple(i for i, kind in enumerate(c.get("down_block_types", ())) if "Attn" in kind)
    groups = int(c.get("norm_num_groups") or 8)
    groups = groups if all(w % groups == 0 for w in widths) else 1
    return UNetConfig(resolution=teacher.resolution, in_channels=teacher.in_channels,
                      out_channels=teacher.in_channels, channels=widths, blocks_per_level=int(c.get("layers_per_block",
                                                                                                   1)),
                      attention_levels=attention or (len(widths) - 1,), groups=groups,
                      num_classes=teacher.num_classes, guidance_embed=False)


def load_folder(path, *, weights: bool = True):
    """A diffusers folder → what `checkpoint.load` makes a ModelDir of: (root, network, config, VP preconditioning,
    meta with sampler defaults and provenance, weights file)."""
    folder = diffusers_dir.locate(path)
    diffusers = require("diffusers", "diffusers")
    diffusers.utils.logging.set_verbosity_error()  # its loading chatter; our own notices say what matters
    unet = _unet(diffusers, folder.unet, weights=weights)
    config = _config(unet.config, folder.unet)
    scheduler, assumed = _scheduler(diffusers, folder)
    prediction = scheduler.config.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise InputError(f"{folder.scheduler}: prediction_type {prediction!r} is not supported; expected one of "
                         f"{PREDICTIONS}")
    ac = scheduler.alphas_cumprod.double()
    precond = VPPreconditioning.from_table(((1 - ac) / ac).sqrt().tolist(), prediction=prediction)
    sampler_defaults = {"sampler": SCHEDULERS[type(scheduler).__name__], "steps": STEPS, "guidance": 1.0,
                        "sigmas": scheduler_sigmas(scheduler, precond, STEPS)}
    meta = {"name": Path(path).resolve().name, "sampler_defaults": sampler_defaults, "precond": precond.to_dict(),
            "diffusers": {"pipeline": folder.pipeline, "unet": "UNet2DModel", "scheduler": type(scheduler).__name__,
                          "scheduler_assumed": assumed, "prediction_type": prediction,
                          "clip_sample": bool(scheduler.config.get("clip_sample", False))},
            "class_names": list(_class_names(folder.unet, config.num_classes))}
    if meta["diffusers"]["clip_sample"]:
        _note(f"{folder.root}: the scheduler clips x0 to [-1, 1] (clip_sample); edgediff's samplers integrate the "
              f"unclipped ODE, as diffusers does with clip_sample=False")
    net = DiffusersUNet(unet, config).eval()
    return folder.root, net, config, precond, meta, folder.unet / diffusers_dir.WEIGHTS


def scheduler_sigmas(scheduler, precond: VPPreconditioning, steps: int) -> list[float]:
    """The σ a diffusers scheduler visits at `steps` steps: its own `sigmas` where it has them (Euler, Heun, DPM
    with Karras σ…), else the table σ of its timesteps (DDIM, DDPM, PNDM, LCM); then 0."""
    scheduler.set_timesteps(steps)
    own = getattr(scheduler, "sigmas", None)
    if own is not None and len(own) == steps + 1:
        out = [float(s) for s in own[:-1]]
    else:
        ts = scheduler.timesteps.tolist()
        if hasattr(scheduler, "prk_timesteps"):  # PNDM repeats a step (PLMS warm-up) or adds half steps (PRK): its grid
            ts = sorted(scheduler._timesteps.tolist(), reverse=True)
        out = [precond.table_sigma(t) for t in ts[:steps]]
    return [*out, 0.0]


def _unet(diffusers, path: Path, *, weights: bool):
    try:
        config = diffusers.UNet2DModel.load_config(path)
        if not weights:
            return diffusers.UNet2DModel.from_config(config).eval()
        return diffusers.UNet2DModel.from_pretrained(path, use_safetensors=True, low_cpu_mem_usage=False).eval()
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        reason = (str(e).splitlines() or [""])[0][:160]
        raise ModelFileError(f"{path}: unreadable diffusers UNet2DModel ({type(e).__name__}: {reason}); expected a "
                             f"complete folder as save_pretrained writes it") from None


def _config(c, path: Path) -> DiffusersConfig:
    if c.time_embedding_type != "positional":
        raise InputError(f"{path}: time_embedding_type {c.time_embedding_type!r} (a VE / score-SDE model) is not "
                         f"supported; expected 'positional' (DDPM-style VP models)")
    size = c.sample_size
    if isinstance(size, list | tuple):
        size = size[0] if len(size) == 2 and size[0] == size[1] else None
    if not isinstance(size, int) or size < 1:
        raise InputError(f"{path}: sample_size {c.sample_size!r}; expected a square image size (an integer)")
    if c.class_embed_type not in CLASS_EMBEDS:
        raise InputError(f"{path}: class_embed_type {c.class_embed_type!r} takes vectors, not class ids; expected "
                         f"one of {CLASS_EMBEDS} with num_class_embeds")
    if c.class_embed_type == "timestep" and not c.num_class_embeds:
        raise InputError(f"{path}: class_embed_type 'timestep' needs num_class_embeds to say how many classes there "
                         f"are; expected an integer")
    classes = int(c.num_class_embeds or 0)
    return DiffusersConfig(resolution=size, in_channels=c.in_channels, out_channels=c.out_channels,
                           num_classes=classes,
                           diffusers=json.loads(json.dumps({k: v for k, v in dict(c).items() if not k.startswith("_")},
                                                           default=str)))


def _class_names(path: Path, classes: int) -> tuple[str, ...]:
    """Class names from an `id2label` (as transformers writes it) in the UNet's config.json, if it has one."""
    try:
        id2label = diffusers_dir.read_json(path / diffusers_dir.CONFIG_FILE).get("id2label") or {}
        names = tuple(str(id2label[str(i)]) for i in range(classes))
    except (ModelFileError, AttributeError, KeyError, TypeError):
        return ()
    return names


def _scheduler(diffusers, folder: diffusers_dir.DiffusersFolder):
    """The folder's scheduler (class from its config), or diffusers' default DDPMScheduler with a notice."""
    if folder.scheduler is None:
        _note(f"{folder.root} has no scheduler_config.json (beside it or in ../scheduler): assumed diffusers' default "
              f"{DEFAULT_SCHEDULER} (linear betas 1e-4..0.02, 1000 steps, epsilon); the artifact records it")
        return getattr(diffusers, DEFAULT_SCHEDULER)(), True
    return build_scheduler(diffusers, folder.scheduler / diffusers_dir.SCHEDULER_FILE), False


def build_scheduler(diffusers, file: Path):
    """The diffusers scheduler a scheduler_config.json describes, built from the dict our hardened reader returned
    (no second, unchecked read of the file); a one-line error for an unsupported or unreadable one."""
    name, config = diffusers_dir.read_scheduler(file)
    try:
        return getattr(diffusers, name).from_config(config)
    except (OSError, ValueError, TypeError, KeyError, NotImplementedError) as e:
        raise ModelFileError(f"{file}: unreadable {name} config ({type(e).__name__}: {e})") from None


def _note(message: str) -> None:
    warnings.warn(message, EdgediffWarning, stacklevel=3)


def describe(md) -> dict:
    """The provenance an artifact of a diffusers model records (`source.model`)."""
    return {"name": md.meta["name"], **md.meta["diffusers"], "channels": md.unet.in_channels,
            "resolution": md.unet.resolution, "classes": md.unet.num_classes}
