"""From "a model or an artifact" to a loaded `Model`: a model directory runs eagerly, an artifact directory on its
own backend (hashes and spec verified first); either one then draws images with the shared host sampler."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.converters import base
from edgediff.errors import InputError
from edgediff.format import artifact, model_dir, pipeline_manifest, text_to_image_dir
from edgediff.format.artifact import Artifact, make_spec
from edgediff.format.configs import Request
from edgediff.format.inputs import InputSpec
from edgediff.format.precond import Preconditioning
from edgediff.models import checkpoint
from edgediff.sampling.denoiser import Runner
from edgediff.sampling.generate import generate, recommended, with_defaults
from edgediff.sampling.static_batch import static_batch


@dataclass(frozen=True, kw_only=True)
class Model:
    """A loaded model or artifact (what `edgediff.load` returns): its Runner and what the host sampler needs."""

    name: str
    path: Path
    backend: str
    precision: str
    device: str
    runner: Runner  # at the artifact's static batch (batch = spec["x"][0][0]); eager takes any batch
    spec: InputSpec
    precond: Preconditioning
    num_classes: int
    sampler_defaults: dict  # the recommended sampler, steps, guidance (and tuned σ)
    artifact: Artifact | None = None  # None for a model directory (eager)
    class_names: tuple[str, ...] = ()  # names of labels 0..num_classes-1, where the model knows them

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.spec["x"][0][1:])

    @property
    def batch(self) -> int | None:
        """The artifact's static batch size (None: eager, any batch)."""
        return None if self.artifact is None else self.spec["x"][0][0]

    def generate(self, *, n: int = 16, seed: int = 0, label: int | None = None, sampler: str | None = None,
                 steps: int | None = None, guidance: float | None = None, batch_size: int | None = None,
                 sigmas=None, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """(images float32 [n, C, H, W] in [-1, 1], labels | None); what is left None is the model's recommendation
        (sampler, steps, guidance and its tuned σ schedule). One seed gives the same images on every backend."""
        asked = {"n": n, "seed": seed, "label": label, "sampler": sampler, "steps": steps, "guidance": guidance,
                 "batch_size": batch_size, "sigmas": sigmas}
        req = recommended(self.sampler_defaults, **{k: v for k, v in asked.items() if v is not None})
        return self.sample(req, progress=progress)

    def sample(self, request: Request, *, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Draw a full `Request` (its sampler and steps as given; guidance None = the model's recommendation).

        Guidance needs class labels: on an unconditional model a scale other than 1 is an InputError."""
        if request.guidance not in (None, 1.0) and not self.num_classes:
            raise InputError(f"{self.name} is unconditional: classifier-free guidance needs class labels; got "
                             f"guidance {request.guidance:g}, expected none (or 1)")
        if request.guidance not in (None, 1.0) and not self.precond.has_null_label:
            raise InputError(f"{self.name} has no 'no label' class to guide against (a diffusers class-conditional "
                             f"UNet); got guidance {request.guidance:g}, expected none (or 1)")
        runner = self.runner if self.batch is None else static_batch(self.runner, self.batch)
        return generate(runner, self.precond, self.shape, with_defaults(request, self.sampler_defaults),
                        num_classes=self.num_classes, progress=progress)


def open_model(target, *, backend: str = "auto", device: str | None = None, threads: int | None = None,
               **options) -> Model:
    """Load 'default', a shipped name, a model dir, an artifact dir, an `Artifact` or a loaded ModelDir.

    `backend` (default 'auto') must match an artifact's own backend; a model directory runs on `eager`. `device`,
    `threads` and the backend's own load options go to its `load`.
    """
    if isinstance(target, Model):
        return target
    if backend != "auto":
        base.get(backend)  # an unknown name fails here, naming the known ones
    path = target.path if isinstance(target, Artifact | checkpoint.ModelDir) else Path(str(target))
    decoder = options.pop("decoder", None)
    if not isinstance(target, Artifact | checkpoint.ModelDir) and pipeline_manifest.is_pipeline(path) and not decoder:
        from edgediff.converters.pipeline_artifact import open_artifact

        return open_artifact(path, device=device, threads=threads)
    found = None if isinstance(target, Artifact | checkpoint.ModelDir) else model_dir.prompt_model(path)
    if found is not None and model_dir.is_text_model(found) and not decoder:  # a shipped name or a directory
        path = found
        if backend not in ("auto", "eager"):
            raise InputError(f"{path} is a text-model directory: it runs on backend 'eager'")
        from edgediff.models import text_model

        return text_model.eager_pipeline(path)
    if not isinstance(target, Artifact | checkpoint.ModelDir) and text_to_image_dir.is_text_to_image(path):
        if backend not in ("auto", "eager"):
            raise InputError(f"{path} is a diffusers text-to-image folder: it runs on backend 'eager'")
        return _open_folder(path, threads=threads, decoder=decoder)
    if decoder is not None:
        raise InputError(f"a decoder folder is taken with a diffusers text-to-image folder; {path} is not one (a "
                         f"converted pipeline carries its own decoder)")
    if isinstance(target, Artifact) or (path / artifact.ARTIFACT_FILE).is_file():
        art = artifact.read(path)
        if backend not in ("auto", art.backend):
            raise InputError(f"{path} is a {art.backend} artifact; use backend {art.backend!r} or 'auto'")
        be = base.get(art.backend)
        runner = be.load(art, device=device, threads=threads, **options)
        return Model(name=artifact.model_name(art), path=art.path, backend=art.backend, precision=art.precision,
                     device=device or be.default_device, runner=runner, spec=art.spec,
                     precond=Preconditioning.from_dict(art.precond), num_classes=art.num_classes,
                     sampler_defaults=dict(art.sampler_defaults), artifact=art,
                     class_names=tuple(art.source.get("class_names") or ()))
    if backend not in ("auto", "eager"):
        raise InputError(f"{target} is a model directory: sample it with backend 'eager', or convert it first "
                         f"(`edgediff convert --backend {backend}`) and pass the artifact directory")
    md = target if isinstance(target, checkpoint.ModelDir) else checkpoint.load(target)
    c = md.unet
    runner = base.get("eager").load(md, device=device, threads=threads, **options)
    spec = make_spec(channels=c.in_channels, resolution=c.resolution, num_classes=c.num_classes,
                     label_dtype="int64", guidance_input=c.guidance_embed)
    return Model(name=md.meta.get("name", md.path.name), path=md.path, backend="eager", precision="fp32",
                 device="CPU", runner=runner, spec=spec, precond=md.precond, num_classes=c.num_classes,
                 sampler_defaults=md.sampler_defaults, class_names=md.class_names)


def from_model(model, *, backend: str = "auto", request: Request, progress: bool = False,
               runtime_options: dict | None = None):
    """Generate `request` from a model dir (on `backend`) or an artifact dir (on its own backend).

    Guidance defaults to the model's recommendation. Static-batch artifacts get the same chunks as eager, so one
    seed gives the same images on every runtime.
    """
    return open_model(model, backend=backend, **(runtime_options or {})).sample(request, progress=progress)


def _open_folder(path, *, threads: int | None = None, decoder=None):
    """The eager pipeline of a local diffusers text-to-image folder (the reference every backend is checked on)."""
    import torch

    from edgediff.models import text_to_image

    if threads:
        torch.set_num_threads(threads)
    return text_to_image.eager_pipeline(text_to_image.load(path, decoder=decoder))
