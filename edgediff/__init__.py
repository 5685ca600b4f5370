"""edgediff: compact diffusion models for phones and laptops.

Train or bring a denoiser, compress and convert it (Core ML, ExecuTorch, OpenVINO), sample from it with one shared
few-step sampler on every runtime, and measure it on the device. The public verbs, keyword-only in the style of
`nncf.quantize`::

    art = edgediff.convert("default", backend="openvino", out="art/ov")
    model = edgediff.load(art)                        # a shipped name, a model dir, an artifact dir or an Artifact
    images, labels = model.generate(n=8, seed=0)      # the model's recommended sampler, steps and guidance
    edgediff.save("grid.png", images, labels)
    edgediff.bench(["art/ov"], out="report")

Importing this package loads no backend runtime (nor torch): each verb imports what it needs when called.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "bench", "convert", "load", "save"]


def convert(model, *, backend: str, out, precision: str = "fp32", batch: int = 1, calibration="trajectory",
            calibration_samples: int = 256, **options):
    """Convert a model ('default', a shipped name, a model dir, a diffusers UNet dir) into an artifact dir `out`.

    Parity-gated (fp32/fp16 ≥ 35 dB against eager, or nothing is written); int8 is calibrated on the model's own
    sampling trajectories ('trajectory'), on 'random' inputs, or on a calibration .npz. `options` are the backend's
    own (executorch: delegate, external_weights; openvino: threads; coreml: minimum_deployment_target, attention,
    chunks, author, license, version; a text-to-image pipeline applies attention and chunks to its UNet).
    Returns the `Artifact`.
    """
    from edgediff.converters.convert import convert_model

    return convert_model(model, backend, out, precision=precision, batch=batch, calibration=calibration,
                         calibration_samples=calibration_samples, **options)


def load(model, *, backend: str = "auto", device: str | None = None, threads: int | None = None, **options):
    """A frozen `Model` over a shipped name, a model dir (eager), an artifact dir or an `Artifact` (its backend):
    `.spec`, `.precond`, `.sampler_defaults`, `.generate(n=, seed=, label=, sampler=, steps=, guidance=)`."""
    from edgediff.runtime.open import open_model

    return open_model(model, backend=backend, device=device, threads=threads, **options)


def save(path, images, labels=None, *, class_names=()):
    """Write images as a `.png` grid (one row per label, named by `class_names` when given) or a `.npy` array
    (+ `.labels.npy`), atomically."""
    from pathlib import Path

    from edgediff.format.images import save as save_images

    return save_images(Path(path), images, labels, class_names=class_names)


def bench(targets, *, out, device: str | None = None, threads: int | None = None, warmup: int = 3, iters: int = 20,
          fid: int = 0, compare=None, isolate: bool = True, progress: bool = False):
    """Measure model and artifact dirs (+ the eager baseline) and write report.md/.json/.jsonl and the plots into
    `out`; returns the rows (`Record`s). A target that cannot run here is a row saying why."""
    from pathlib import Path

    from edgediff.measure.bench import run

    return run(list(targets), out_dir=Path(out), device=device, threads=threads, warmup=warmup, iters=iters,
               progress=progress, compare=compare, fid=fid, isolate=isolate)
