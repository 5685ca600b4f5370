"""Measuring a text-to-image bench target (a diffusers folder: eager; a pipeline artifact: its components' own
backends): one row per component — text encoder per prompt, UNet per step (both guidance branches when guided),
decoder per image — and one prompt → image row at the pipeline's recommended sampler, steps and guidance (the host
tokenizer and sampler counted apart). `calls_per_image` counts runtime calls: a guided step is one call of a
batch-2 UNet artifact, two of a batch-1 one.

Component rows are named `<pipeline>:<component>`, so an eager folder benched beside its artifact gives every
component its own speed-up; the image row carries the UNet's per-step latency and the whole image's.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

from edgediff.converters import base
from edgediff.format import artifact, model_dir, pipeline_manifest, text_to_image_dir
from edgediff.measure.latency import cpu_seconds, host, measure, peak_rss_mb
from edgediff.measure.record import Record

COMPONENTS = pipeline_manifest.COMPONENTS
PROMPT = "a red apple on a wooden table"


def is_pipeline(target) -> bool:
    return pipeline_manifest.is_pipeline(target) or model_dir.prompt_model(target) is not None


def describe(target) -> dict:
    """Per component: backend, precision, dir, size (MB) and parity; and the pipeline's name (no runtime)."""
    path = Path(target)
    found = None if pipeline_manifest.is_pipeline(path) else model_dir.prompt_model(path)
    if not pipeline_manifest.is_pipeline(path):  # eager: a text-model directory or a diffusers folder
        if found is not None and model_dir.is_text_model(found):
            from edgediff.measure.info_text_to_image import text_model_components

            name, sizes = found.resolve().name, {c: (found, v["weights_mb"])
                                                 for c, v in text_model_components(found).items()}
        else:
            name = text_to_image_dir.locate(path).root.resolve().name
            sizes = {c: (path / p, sum(f.stat().st_size for f in (path / p).glob("*.safetensors")) / 1e6)
                     for c, p in text_to_image_dir.COMPONENT_FOLDERS.items()}
        comps = {c: {"backend": "eager", "precision": "fp32", "path": str(p), "parity_db": None, "batch": None,
                     "size_mb": mb} for c, (p, mb) in sizes.items()}
        return {"name": name, "components": comps, "end_to_end_db": None}
    m = pipeline_manifest.read(path)
    comps = {}
    for c, entry in m["components"].items():
        art = artifact.read(path / entry["dir"])
        comps[c] = {"backend": art.backend, "precision": art.precision, "path": str(art.path),
                    "parity_db": art.parity_db, "size_mb": art.size_bytes / 1e6,
                    "batch": art.spec[next(iter(art.spec))][0][0]}
    return {"name": m["name"], "components": comps, "end_to_end_db": (m.get("end_to_end") or {}).get("psnr_db")}


def _rows(desc: dict, path: str, device, **measured) -> list[Record]:
    comps = desc["components"]
    rows = [Record(backend=c["backend"], precision=c["precision"], device=device or base.get(c["backend"])
                   .default_device, model=f"{desc['name']}:{name}", path=c["path"], batch=c["batch"] or 1,
                   size_mb=c["size_mb"],
                   parity_db=c["parity_db"], host=host(), **measured.get(name, measured.get("all", {})))
            for name, c in comps.items()]
    backends = "+".join(sorted({c["backend"] for c in comps.values()}))
    precisions = "+".join(sorted({c["precision"] for c in comps.values()}))
    rows.append(Record(backend=backends, precision=precisions, device=rows[1].device, model=desc["name"], path=path,
                       batch=1, size_mb=sum(c["size_mb"] for c in comps.values()), parity_db=desc["end_to_end_db"],
                       host=host(), **measured.get("image", measured.get("all", {}))))
    return rows


def skipped(target, *, device=None) -> list[Record] | None:
    """Rows marked with why the pipeline cannot run here (a component's backend), or None when it can."""
    desc = describe(target)
    reasons = [base.get(c["backend"]).unavailable() for c in desc["components"].values()]
    reason = next((r for r in reasons if r), None)
    return None if reason is None else _rows(desc, str(target), device, all={"skipped": reason})


class _Timed:
    """A component wrapper: the first call's arguments, the number of runtime calls (rows / the component's static
    batch, rounded up; eager: one per call) and the time inside them."""

    def __init__(self, fn, batch: int | None):
        self.fn, self.batch, self.args, self.calls, self.seconds = fn, batch, None, 0, 0.0

    def __call__(self, *args):
        if self.args is None:
            self.args = args
        t0 = time.perf_counter()
        try:
            return self.fn(*args)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1 if self.batch is None else -(-len(args[0]) // self.batch)


def measure_pipeline(target, *, device: str | None = None, threads: int | None = None, warmup: int = 3,
                     iters: int = 20, isolated: bool = False, repeats: int = 3) -> list[Record]:
    """Bench one text-to-image target in this process (see the module docstring)."""
    from edgediff.runtime.open import open_model

    row = skipped(target, device=device)
    if row is not None:
        return row
    desc = describe(target)
    loads = []
    for _ in range(3):
        pipe = None
        t0 = time.perf_counter()
        pipe = open_model(target, device=device, threads=threads)
        loads.append((time.perf_counter() - t0) * 1e3)
    timed = {c: _Timed(getattr(pipe, c), desc["components"][c]["batch"]) for c in COMPONENTS}
    run = dataclasses.replace(pipe, **timed)
    t0 = time.perf_counter()
    run.generate(prompt=PROMPT, seed=0)
    first_ms = (time.perf_counter() - t0) * 1e3
    totals, inside, unet_calls = [], [], []
    for i in range(repeats):
        for t in timed.values():
            t.calls, t.seconds = 0, 0.0
        t0 = time.perf_counter()
        run.generate(prompt=PROMPT, seed=i)
        totals.append((time.perf_counter() - t0) * 1e3)
        inside.append(sum(t.seconds for t in timed.values()) * 1e3)
        unet_calls.append(timed["unet"].calls)
    measured = {}
    for name, t in timed.items():
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        step = measure(lambda t=t: t.fn(*t.args), warmup=warmup, iters=iters).summary()
        measured[name] = {"step": step, "cpu_util": (cpu_seconds() - cpu0) / (time.perf_counter() - wall0),
                          "threads_requested": threads, "calls_per_image": t.calls}
    total = statistics.median(totals)
    overhead = statistics.median(a - b for a, b in zip(totals, inside, strict=True))
    d = pipe.sampler_defaults
    measured["image"] = {"step": measured["unet"]["step"], "load_ms": statistics.median(loads), "first_ms": first_ms,
                         "image_ms": total, "sampler_overhead_ms": overhead, "sampler_overhead_frac": overhead / total,
                         "calls_per_image": statistics.median(unet_calls), "threads_requested": threads,
                         "peak_rss_mb": peak_rss_mb() if isolated else None, "isolated": isolated,
                         "sampler": {"name": d["sampler"], "steps": d["steps"], "guidance": d["guidance"]}}
    return _rows(desc, str(target), device, **measured)
