"""`convert_model`: a model directory ('default', a shipped name, a path, a diffusers UNet) → its network, static
input spec and calibration → the backend's `convert` → an artifact directory."""

from __future__ import annotations

import os

from edgediff.converters import base
from edgediff.converters import calibration as calibrate
from edgediff.errors import InputError
from edgediff.format import artifact, model_dir
from edgediff.format.files import file_sha256
from edgediff.models import checkpoint
from edgediff.models import diffusers as byom


def convert_model(model, backend: str, out, *, precision: str = "fp32", batch: int = 1,
                  calibration="trajectory", calibration_samples: int = 256, **options):
    """Convert a model directory ('default', a shipped name, a path) for `backend` into the artifact dir `out`.

    Precisions that need calibration (int8) get `calibration`: 'trajectory' (inputs recorded while the model
    samples, the default), 'random' (the naive baseline), or a calibration .npz path. `options` are the
    backend's own convert options (e.g. executorch's delegate); an unknown one is an InputError listing them.
    """
    if backend not in base.convertible():
        raise InputError(f"cannot convert to {backend!r}; expected one of {', '.join(base.convertible())}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be an integer >= 1, got {batch!r}")
    be = base.get(backend)
    pipeline_only = {k: v for k in ("decoder", "check_steps") if (v := options.pop(k, None)) is not None}
    base.check_options(be, "convert", options)
    folder = model_dir.prompt_model(model) if isinstance(model, str | os.PathLike) else None
    if folder is not None:  # a diffusers text-to-image folder or the project's own text model
        from edgediff.converters.text_to_image import convert_pipeline

        return convert_pipeline(folder, backend, out, precision=precision, unet_batch=batch, **pipeline_only,
                                **options)
    if pipeline_only:
        raise InputError(f"{' and '.join(pipeline_only)} apply to a text-to-image pipeline folder; {model} is not "
                         f"one")
    md = checkpoint.load(model)
    net, precond, defaults, c = md.net, md.precond, md.sampler_defaults, md.unet
    source = {"model": byom.describe(md) if md.is_diffusers else md.meta.get("name", str(model)),
              "checkpoint_sha256": file_sha256(md.weights_file)}
    if md.class_names:
        source["class_names"] = list(md.class_names)
    channels, resolution, num_classes, guidance_input = c.in_channels, c.resolution, c.num_classes, c.guidance_embed
    spec = artifact.make_spec(batch=batch, channels=channels, resolution=resolution, num_classes=num_classes,
                              label_dtype=be.label_dtype, guidance_input=guidance_input)
    if precision in be.calibrated:
        options["calibration"] = calibrate.for_model(net, precond, (channels, resolution, resolution),
                                                     num_classes=num_classes, kind=calibration,
                                                     samples=calibration_samples, sampler_defaults=defaults)
    return be.convert(net, spec, out, precision=precision, precond=precond, sampler_defaults=defaults,
                      source=source, **options)
