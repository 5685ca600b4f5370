"""Backends behind one Runner interface, installed as `edgediff.converters`; heavy runtimes import lazily.

Each backend module offers `load(...) -> Runner` and (except `eager`, the reference) `convert(...) -> Artifact`.
"""

from __future__ import annotations

import importlib

from edgediff.errors import InputError

BACKENDS = ("eager", "executorch", "openvino", "coreml")
CONVERTIBLE = BACKENDS[1:]


def get(name: str):
    """The backend module called `name`; importing it does not yet import its runtime."""
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"{__name__}.{name}")


def convert_model(model, backend: str, out, *, precision: str = "fp32", batch: int = 1,
                  calibration="trajectory", calibration_samples: int = 256, **options):
    """Convert a model directory ('default', a shipped name, a path) for `backend` into the artifact dir `out`.

    Precisions that need calibration (int8) get `calibration`: 'trajectory' (inputs recorded while the model
    samples, the default), 'random' (the naive baseline), or a calibration .npz path.
    """
    from edgediff import artifact, calibrate, checkpoint

    if backend not in CONVERTIBLE:
        raise InputError(f"cannot convert to {backend!r}; expected one of {', '.join(CONVERTIBLE)}")
    if batch < 1:
        raise InputError(f"batch must be >= 1, got {batch}")
    from edgediff import byom

    mod = get(backend)
    if byom.is_diffusers_dir(model):
        net, desc = byom.load_diffusers(model)
        spec = artifact.make_spec(batch=batch, channels=desc["channels"], resolution=desc["resolution"],
                                  num_classes=0)
        if precision in getattr(mod, "CALIBRATED", ()):
            options["calibration"] = calibrate.for_model(
                net, net.precond(), (desc["channels"], desc["resolution"], desc["resolution"]), num_classes=0,
                kind=calibration, samples=calibration_samples)
        return mod.convert(net, spec, out, precision=precision, precond=net.precond(), source={"model": desc},
                           sampler_defaults={"sampler": "dpmpp_2m", "steps": 20, "guidance": 1.0}, **options)
    md = checkpoint.load(model)
    c = md.unet
    spec = artifact.make_spec(batch=batch, channels=c.in_channels, resolution=c.resolution,
                              num_classes=c.num_classes, label_dtype=mod.LABEL_DTYPE,
                              guidance_input=c.guidance_embed)
    if precision in getattr(mod, "CALIBRATED", ()):
        options["calibration"] = calibrate.for_model(md.net, md.precond, (c.in_channels, c.resolution, c.resolution),
                                                     num_classes=c.num_classes, kind=calibration,
                                                     samples=calibration_samples,
                                                     sampler_defaults=md.sampler_defaults)
    source = {"model": md.meta.get("name", str(model)),
              "checkpoint_sha256": artifact.file_sha256(md.path / checkpoint.WEIGHTS_FILE)}
    return mod.convert(md.net, spec, out, precision=precision, precond=md.precond,
                       sampler_defaults=md.sampler_defaults, source=source, **options)


def available() -> dict[str, list[str] | str]:
    """What each runtime can use on this machine, or why it cannot run here."""
    from edgediff.errors import EdgediffError

    out: dict[str, list[str] | str] = {}
    for name in BACKENDS:
        try:
            out[name] = get(name).devices()
        except EdgediffError as e:
            out[name] = f"unavailable: {e}"
    return out
