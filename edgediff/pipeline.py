"""`edgediff pipeline`: the whole job in one command, with every stage cached by content hash.

model (shipped default, its shipped pruned variant and consistency student) → calibrate + convert (ExecuTorch
fp32/int8, OpenVINO fp32/int8, Core ML fp16/palette6) → a labelled grid per runnable backend → bench → OUT/README.md.
A stage is skipped when its stamp (`OUT/.stages/<stage>.json`) holds the same input hash; every file is written to a
temp path and renamed, so an interrupted run is simply run again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

STAGES = ("convert", "sample", "bench", "readme")
TARGETS = (("executorch", "fp32"), ("executorch", "int8"), ("openvino", "fp32"), ("openvino", "int8"),
           ("coreml", "fp16"), ("coreml", "palette6"))
RUNNABLE_HERE = ("executorch", "openvino")  # Core ML predicts only on macOS


@dataclass(frozen=True)
class Plan:
    deploy: str  # the model that is converted (the few-step student when there is one)
    compare: tuple[str, ...]  # other models benchmarked beside it (teacher, pruned)
    out: Path
    fid: int = 0
    n: int = 100


def plan(model: str, out: Path, *, student: str | None = "auto", pruned: str | None = "auto", fid: int = 0) -> Plan:
    """Which model to deploy and which to compare: 'auto' picks the shipped student / pruned model if present."""
    from . import checkpoint

    shipped = checkpoint.list_shipped()
    name = checkpoint.load(model, weights=False).meta.get("name", str(model))

    def pick(kind: str | None, suffix: str) -> str | None:
        if kind == "auto":
            return f"{name}-{suffix}" if f"{name}-{suffix}" in shipped else None
        return kind

    s, p = pick(student, "cd"), pick(pruned, "p50")
    return Plan(deploy=s or model, compare=tuple(m for m in (model, p) if m and m != (s or model)), out=Path(out),
                fid=fid)


def run(p: Plan, *, stages=STAGES, progress: bool = True) -> Path:
    """Run the selected stages in order (each skipped when cached); return OUT/README.md."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise InputError(f"unknown stages {unknown}; expected some of {', '.join(STAGES)}")
    p.out.mkdir(parents=True, exist_ok=True)
    artifacts = _stage(p, "convert", stages, _key(p.deploy, TARGETS), lambda: _convert(p, progress))
    grids = _stage(p, "sample", stages, _key(artifacts, p.n), lambda: _sample(p, artifacts, progress))
    bench_dir = _stage(p, "bench", stages, _key(artifacts, p.compare, p.fid),
                       lambda: _bench(p, artifacts, progress))
    return Path(_stage(p, "readme", stages, _key(artifacts, grids, bench_dir, _report_hash(p)),
                       lambda: _readme(p, artifacts, grids)))


def _stage(p: Plan, name: str, selected, key: str, work):
    """Reuse the stamp's result when its key matches (or the stage is not selected); else run and stamp."""
    from .checkpoint import write_text

    stamp = p.out / ".stages" / f"{name}.json"
    old = json.loads(stamp.read_text()) if stamp.is_file() else None
    if old and (old["key"] == key or name not in selected):
        return old["result"]
    if name not in selected:
        raise InputError(f"stage {name!r} has not run yet in {p.out}; include it in --stages")
    t0 = time.perf_counter()
    result = work()
    write_text(stamp, json.dumps({"key": key, "result": result, "seconds": round(time.perf_counter() - t0, 1)}))
    return result


def _key(*parts) -> str:
    from . import artifact, checkpoint

    def part(x):
        if isinstance(x, str) and not x.startswith("/") and x in checkpoint.list_shipped() or x == "default":
            x = str(checkpoint.resolve(x))
        if isinstance(x, str) and (Path(x) / checkpoint.WEIGHTS_FILE).is_file():
            return artifact.file_sha256(Path(x) / checkpoint.WEIGHTS_FILE)
        return x

    return hashlib.sha256(json.dumps([part(x) for x in parts], sort_keys=True, default=str).encode()).hexdigest()


def _report_hash(p: Plan) -> str:
    f = p.out / "bench" / "report.json"
    return hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else ""


def _convert(p: Plan, progress: bool) -> dict[str, str]:
    from .converters import convert_model
    from .errors import MissingDependencyError

    out = {}
    items = TARGETS
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(TARGETS, desc="convert", unit="artifact")
    for backend, precision in items:
        try:
            art = convert_model(p.deploy, backend, p.out / "artifacts" / f"{backend}-{precision}",
                                precision=precision)
        except MissingDependencyError as e:  # a runtime the user did not install: say so in the README
            out[f"{backend}-{precision}"] = f"skipped: {e}"
            continue
        out[f"{backend}-{precision}"] = str(art.path)
    return out


def _sample(p: Plan, artifacts: dict, progress: bool) -> dict[str, str]:
    from . import generate

    defaults = _defaults(p.deploy)
    req = generate.Request(n=p.n, seed=0, sampler=defaults["sampler"], steps=int(defaults["steps"]))
    grids = {}
    sources = {"eager": p.deploy, **{k: v for k, v in artifacts.items() if k.split("-")[0] in RUNNABLE_HERE
                                     and not v.startswith("skipped")}}
    for name, src in sources.items():
        images, labels = generate.from_model(src, request=req, progress=progress)
        grids[name] = str(generate.save(p.out / "grids" / f"{name}.png", images, labels))
    return grids


def _defaults(model: str) -> dict:
    from . import checkpoint

    return checkpoint.load(model, weights=False).sampler_defaults


def _bench(p: Plan, artifacts: dict, progress: bool) -> str:
    from . import bench

    targets = [p.deploy, *p.compare] + [v for k, v in artifacts.items()
                                        if k.split("-")[0] in RUNNABLE_HERE and not v.startswith("skipped")]
    bench.run(targets, out_dir=p.out / "bench", fid=p.fid, progress=progress)
    return str(p.out / "bench")


def _readme(p: Plan, artifacts: dict, grids: dict) -> str:
    from .checkpoint import write_text
    from .pipeline_readme import render

    path = p.out / "README.md"
    write_text(path, render(p, artifacts, grids))
    return str(path)
