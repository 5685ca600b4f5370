"""`edgediff compress-report` on a text-to-image folder: every compressed pipeline variant beside fp32, as (image
PSNR, UNet ms/step, ms per image, MB).

Each backend that runs here converts the folder at fp32 and at its compressed precisions (int8 is hybrid: the UNet's
activations calibrated on the pipeline's own trajectories, the text encoder and decoder weight-compressed); every
variant draws the same prompts and seeds, and its images are compared with the same backend's fp32 images and with
the eager folder's. Then `edgediff bench` measures them all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgediff.converters import base, parity
from edgediff.converters.text_to_image import BACKENDS, convert_pipeline
from edgediff.format.files import write_text
from edgediff.measure import bench
from edgediff.measure.report import markdown_table

PROMPTS = ("a red apple on a wooden table", "a lighthouse at dusk", "a bowl of soup")


def variants() -> list[tuple[str, str]]:
    """(backend, precision) pairs: fp32 and each compressed precision of every backend that runs here."""
    out = []
    for name in BACKENDS:
        be = base.get(name)
        if be.unavailable() is None and base.installed(be) and be.compressed:
            out += [(name, "fp32"), *((name, q) for q in be.compressed)]
    return out


def images(pipe, steps: int | None = None) -> np.ndarray:
    return np.concatenate([pipe.generate(prompt=p, seed=i, steps=steps) for i, p in enumerate(PROMPTS)])


def report(folder, out: Path, *, work: Path | None = None, threads: int | None = None, progress: bool = True,
           steps: int | None = None) -> Path:
    """Convert the variants, compare their images, bench them, write out/compression.md."""
    from edgediff.runtime.open import open_model

    out = Path(out)
    work = Path(work or out / "artifacts")
    eager = open_model(folder)
    reference = images(eager, steps)
    targets, psnr = [str(folder)], {str(folder): (None, None)}
    fp32_images = {}
    for backend, precision in variants():
        dest = work / f"{eager.name}-{backend}-{precision}"
        if progress:
            print(f"compress-report: {backend} {precision} …", flush=True)
        convert_pipeline(folder, backend, dest, precision=precision)
        got = images(open_model(dest, threads=threads), steps)
        if precision == "fp32":
            fp32_images[backend] = got
        same = fp32_images.get(backend)
        vs_fp32 = parity.psnr_db(same, got) if same is not None and precision != "fp32" else None
        psnr[str(dest)] = (vs_fp32, parity.psnr_db(reference, got))
        targets.append(str(dest))
    records = bench.run(targets, out_dir=out, threads=threads, progress=progress)
    write_text(out / "compression.md", table(records, targets, psnr))
    return out / "compression.md"


def table(records, targets: list[str], psnr: dict) -> str:
    """One row per variant (its prompt → image row), with the image PSNRs and the speed-ups."""
    rows = {str(Path(r.path).resolve()): r for r in records if ":" not in (r.model or "")}
    ref = rows[str(Path(targets[0]).resolve())]
    fp32 = {}
    out = []
    for t in targets:
        r = rows[str(Path(t).resolve())]
        if r.precision == "fp32" or r.backend == "eager":
            fp32.setdefault(r.backend, r)
        same = fp32.get(r.backend)
        vs_fp32, vs_eager = psnr[t]
        out.append([r.backend, r.precision, f"{r.size_mb:.2f}", f"{r.step['p50']:.2f}", f"{r.image_ms:.1f}",
                    _db(vs_fp32), _db(vs_eager), _x(same.image_ms, r.image_ms), _x(ref.image_ms, r.image_ms)])
    head = ["backend", "precisions", "MB", "UNet ms/step p50", "image ms", "image dB vs same backend fp32",
            "image dB vs eager", "× vs same backend fp32", "× vs eager"]
    return (markdown_table(head, out) + f"\n\nImages: {len(PROMPTS)} prompts, seeds 0..{len(PROMPTS) - 1}, the "
            f"pipeline's recommended sampler and steps; int8 = UNet activations int8 (calibrated on the pipeline's "
            f"own trajectories), text encoder and decoder weight-only.\n")


def _db(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def _x(a, b) -> str:
    return "–" if not a or not b else f"{a / b:.2f}"
