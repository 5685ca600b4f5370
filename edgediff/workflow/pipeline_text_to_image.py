"""`edgediff pipeline --task text-to-image [--model sd_folder]`: the whole job on a text-to-image model (a diffusers
folder or the project's own text model; by default the shipped openmoji-t2i), each stage cached.

convert the folder into a pipeline artifact per target (OpenVINO fp32 + hybrid int8, ExecuTorch fp32, Core ML
fp16 by default) → a grid of the same prompts and seeds per backend that runs here (and the eager folder) → bench
(per-component and per-image rows) → OUT/README.md with the components, their parity, the latency and how to ship
them. Stages are stamped by content hash as `edgediff pipeline` stamps them, so an interrupted run is run again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgediff.converters import base
from edgediff.converters.text_to_image import BACKENDS, convert_pipeline
from edgediff.errors import InputError, MissingDependencyError
from edgediff.format import artifact, jsonfile, model_dir, pipeline_manifest, text_to_image_dir
from edgediff.format import images as images_io
from edgediff.format.files import write_text
from edgediff.measure import bench

PROMPTS = ("a red apple on a wooden table", "a lighthouse at dusk", "a bowl of soup", "a small house by a lake")
TARGETS = (("openvino", "fp32"), ("openvino", "int8"), ("executorch", "fp32"), ("coreml", "fp16"))


def targets_from(names) -> tuple[tuple[str, str], ...]:
    """'backend-precision' names → pairs, each one a pipeline can be converted to."""
    if names is None:
        return TARGETS
    out = []
    for name in names:
        backend, _, precision = str(name).partition("-")
        if backend not in BACKENDS or precision not in base.get(backend).precisions:
            raise InputError(f"unknown text-to-image target {name!r}; expected e.g. "
                             f"{', '.join('-'.join(t) for t in TARGETS)}")
        out.append((backend, precision))
    return tuple(out)


def run(folder, out: Path, *, targets=None, stages=None, progress: bool = True, steps: int | None = None) -> Path:
    """Run the stages (see the module docstring); return OUT/README.md."""
    from edgediff.workflow.pipeline import STAGES, Plan, _key, _NotSelected, _stage

    if not model_dir.is_text_model(folder):
        text_to_image_dir.locate(folder)  # a bad folder fails before anything is written
    prompts = prompts_for(folder)
    targets = targets_from(targets)
    stages = STAGES if stages is None else stages
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = Plan(deploy=str(folder), compare=(), out=out, targets=targets)
    try:
        arts = _stage(p, "convert", stages, _key(str(folder), targets), lambda: _convert(p, progress))
        grids = _stage(p, "sample", stages, _key(arts, steps, prompts),
                       lambda: _sample(p, arts, steps, prompts, progress))
        bench_dir = _stage(p, "bench", stages, _key(arts), lambda: _bench(p, arts, progress))
        return Path(_stage(p, "readme", stages, _key(arts, grids, bench_dir),
                           lambda: _readme(p, arts, grids, prompts)))
    except _NotSelected:
        return out


def _convert(p, progress: bool) -> dict[str, str]:
    arts = {}
    for backend, precision in p.targets:
        name = f"{backend}-{precision}"
        try:
            convert_pipeline(p.deploy, backend, p.out / "artifacts" / name, precision=precision, progress=progress)
        except MissingDependencyError as e:
            arts[name] = f"skipped: {e}"
            continue
        arts[name] = str(p.out / "artifacts" / name)
    return arts


def prompts_for(folder) -> tuple[str, ...]:
    """The prompts the grids draw: a text model's own example prompts (captions of its data), else PROMPTS."""
    if model_dir.is_text_model(folder):
        found = jsonfile.read_json(Path(folder) / model_dir.CONFIG_FILE).get("example_prompts")
        if isinstance(found, list) and found and all(isinstance(t, str) for t in found):
            return tuple(found)
    return PROMPTS


def _sample(p, arts: dict, steps, prompts, progress: bool) -> dict[str, str]:
    from edgediff.runtime.open import open_model

    sources = {"eager": p.deploy, **{k: v for k, v in arts.items() if not v.startswith("skipped")
                                     and base.get(k.split("-")[0]).unavailable() is None}}
    grids = {}
    for name, src in sources.items():
        if progress:
            print(f"sampling {len(prompts)} prompts on {name} …", flush=True)
        pipe = open_model(src)
        images = np.concatenate([pipe.generate(prompt=t, seed=i, steps=steps) for i, t in enumerate(prompts)])
        grids[name] = str(images_io.save(p.out / "grids" / f"{name}.png", images, np.arange(len(prompts)),
                                         class_names=prompts))
    return grids


def _bench(p, arts: dict, progress: bool) -> str:
    targets = [p.deploy, *(v for v in arts.values() if not v.startswith("skipped"))]
    bench.run(targets, out_dir=p.out / "bench", progress=progress)
    return str(p.out / "bench")


def _sampler_lines(arts: dict) -> list[str]:
    """The recommended sampler's update rule (`sampler_defaults` of the first converted pipeline)."""
    from edgediff.workflow.app_guide import update_rule

    done = [v for v in arts.values() if not v.startswith("skipped")]
    if not done:
        return []
    d = pipeline_manifest.read(done[0])["sampler_defaults"]
    return ["", f"Recommended sampler: {d['sampler']} × {d['steps']} steps, guidance {d.get('guidance', 1.0)}; "
            f"per step: {update_rule(d)}."]


def _readme(p, arts: dict, grids: dict, prompts) -> str:
    name = Path(p.deploy).resolve().name
    lines = [f"# edgediff pipeline: {name} (text-to-image)", "", f"Source: `{p.deploy}`.", "",
             "## Pipeline artifacts", "", "| artifact | component | backend | precision | MB | parity dB | "
             "converted in s | peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for key, path in arts.items():
        if path.startswith("skipped"):
            lines.append(f"| {key} | – | – | – | – | – | – | {path} |")
            continue
        m = pipeline_manifest.read(path)
        for comp, c in m["components"].items():
            size = artifact.read(Path(path) / c["dir"]).size_bytes / 1e6
            db = "not measured here" if c["parity_db"] is None else f"{c['parity_db']:.1f}"
            lines.append(f"| {key} | {comp} | {c['backend']} | {c['precision']} | {size:.2f} | {db} | "
                         f"{c['convert_s']:.1f} | {c['peak_rss_mb']:.0f} |")
        e2e = m["end_to_end"]
        check = f"{e2e['psnr_db']:.1f} dB vs eager" if "psnr_db" in e2e else f"skipped: {e2e['skipped']}"
        lines.append(f"| {key} | image ({e2e.get('prompt', '–')!r}) | | | | {check} | | |")
    lines += ["", "## Images", "", f"The same {len(prompts)} prompts and seeds on every backend that runs here:", ""]
    lines += [f"- {k}: `{Path(v).relative_to(p.out)}`" for k, v in grids.items()]
    lines += ["", "## Latency", "", "Per component (text encoder per prompt, UNet per step, decoder per image) and "
              "per image at the recommended steps: `bench/report.md`.", "",
              "## In an app", "",
              "Each component is an ordinary edgediff artifact (`artifact.json` says its inputs, shapes and dtypes); "
              "`pipeline.json` carries what the host does: CLIP tokenization with the copied tokenizer files (pad "
              "to `max_length`), the σ list for the chosen step count (`sigmas`), the preconditioning "
              "(`precond`: VP for a diffusers folder, EDM for edgediff's own text model), classifier-free "
              "guidance or the guidance embedding (`guidance_embed`), and the latents "
              "÷ `scaling_factor` before the decoder. `edgediff.load(path).generate(prompt=...)` is the reference "
              "host loop.", *_sampler_lines(arts), ""]
    path = p.out / "README.md"
    write_text(path, "\n".join(lines))
    return str(path)
