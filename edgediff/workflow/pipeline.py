"""`edgediff pipeline`: the whole job in one command, with every stage cached by content hash.

[train a base model from --config] → [prune + recover] → [consistency-distil] (each optional; by default the shipped
default model, its shipped pruned variant and its shipped student are used) → calibrate + convert (ExecuTorch
fp32/int8, OpenVINO fp32/int8, Core ML fp16/palette6) → a labelled grid per runnable backend → bench → OUT/README.md.
A stage is skipped when its stamp (`OUT/.stages/<stage>.json`) holds the same input hash; every file is written to a
temp path and renamed and the training stages resume from their last checkpoint, so an interrupted run is simply
run again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from edgediff.converters import base
from edgediff.converters.convert import convert_model
from edgediff.errors import InputError, MissingDependencyError
from edgediff.format import artifact, diffusers_dir, model_dir, pipeline_manifest, text_to_image_dir
from edgediff.format import images as images_io
from edgediff.format.files import write_text
from edgediff.measure import bench
from edgediff.models import checkpoint
from edgediff.runtime import open as sample_open
from edgediff.sampling import generate
from edgediff.training import distill, prune
from edgediff.training import fit as train
from edgediff.workflow.pipeline_readme import render

STAGES = ("train", "prune", "distill", "convert", "sample", "bench", "readme")


def default_targets() -> tuple[tuple[str, str], ...]:
    """(backend, precision) of every registered backend's `pipeline_precisions`."""
    return tuple((n, q) for n in base.convertible() for q in base.get(n).pipeline_precisions)


def known_targets() -> dict[str, tuple[str, str]]:
    """Every 'backend-precision' a registered backend can build."""
    return {f"{n}-{q}": (n, q) for n in base.convertible() for q in base.get(n).precisions}


def runs_here(target: str) -> bool:
    """Whether an artifact of 'backend-precision' `target` can run on this machine (Core ML: only on macOS)."""
    return base.get(target.split("-")[0]).unavailable() is None


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """The optional model-building stages; each trains into OUT/models/<stage> and resumes when interrupted."""

    config: str | None = None  # train a new base model from this config (a config.json or a shipped model's name)
    train_steps: int | None = None  # None: the config's own step count
    prune: float = 0.0  # channel ratio to prune from the base (0: no pruning stage)
    prune_steps: int = 800
    distill_steps: int = 0  # consistency-distil the (pruned) base for this many steps (0: no distillation stage)
    threads: int | None = None

    def __post_init__(self):
        if not 0.0 <= self.prune < 1.0:
            raise InputError(f"--prune must be a ratio in [0, 1), got {self.prune}")
        if self.prune_steps < 0 or self.distill_steps < 0 or (self.train_steps is not None and self.train_steps < 1):
            raise InputError("step counts must be positive (--train-steps >= 1, --prune-steps/--distill-steps >= 0)")


@dataclass(frozen=True, kw_only=True)
class Plan:
    deploy: str  # the model that is converted (the few-step student when there is one)
    compare: tuple[str, ...]  # other models benchmarked beside it (teacher, pruned)
    out: Path
    fid: int = 0
    n: int = 100
    recipe: Recipe = Recipe()
    base: str = "default"
    targets: tuple[tuple[str, str], ...] = ()


def plan(model: str, out: Path, *, student: str | None = "auto", pruned: str | None = "auto", fid: int = 0,
         recipe: Recipe = Recipe(), targets=None, n: int = 100) -> Plan:
    """Which model to deploy and which to compare.

    Models the recipe builds live in OUT/models/{base,pruned,student}. Otherwise 'auto' picks the shipped
    student / pruned variant of `model` if there is one. The deployed model is the student when there is one, else
    the pruned model when the recipe prunes, else the base; the others are benchmarked beside it.
    """

    out = Path(out)
    known = known_targets()
    names = [t if isinstance(t, str) else "-".join(t) for t in (default_targets() if targets is None else targets)]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        raise InputError(f"unknown targets {unknown or '(none)'}; expected some of {', '.join(known)}")
    targets = tuple(known[n] for n in dict.fromkeys(names))
    if recipe.config:
        _base_config(recipe.config)  # a bad config fails now, not after minutes of work
        base = str(out / "models" / "base")
        name = None
    else:
        base = model
        name = checkpoint.load(model, weights=False).meta.get("name", str(model))
    shipped = model_dir.list_shipped()

    def pick(kind: str | None, suffix: str) -> str | None:
        if kind == "auto":
            return f"{name}-{suffix}" if name and f"{name}-{suffix}" in shipped else None
        return kind

    p = str(out / "models" / "pruned") if recipe.prune else pick(pruned, "p50")
    s = str(out / "models" / "student") if recipe.distill_steps else pick(student, "cd")
    deploy = s or (p if recipe.prune else base)
    return Plan(deploy=deploy, compare=tuple(m for m in dict.fromkeys((base, p)) if m and m != deploy), out=out,
                fid=fid, recipe=recipe, base=base, targets=tuple(targets), n=n)


class _NotSelected(Exception):
    """A stage that is not selected and has never run: the run stops before it."""


def run(p: Plan, *, stages=STAGES, progress: bool = True) -> Path:
    """Run the selected stages in order (each skipped when cached); return OUT/README.md (OUT when stopped early)."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise InputError(f"unknown stages {unknown}; expected some of {', '.join(STAGES)}")
    p.out.mkdir(parents=True, exist_ok=True)
    r = p.recipe
    try:
        if r.config:
            _stage(p, "train", stages, _key(_base_config(r.config), r.train_steps), lambda: _train(p, progress))
        if r.prune:
            _stage(p, "prune", stages, _key(p.base, r.prune, r.prune_steps), lambda: _prune(p, progress))
        if r.distill_steps:
            _stage(p, "distill", stages, _key(_teacher(p), r.distill_steps), lambda: _distill(p, progress))
        artifacts = _stage(p, "convert", stages, _key(p.deploy, p.targets), lambda: _convert(p, progress))
        grids = _stage(p, "sample", stages, _key(artifacts, p.n), lambda: _sample(p, artifacts, progress))
        bench_dir = _stage(p, "bench", stages, _key(artifacts, p.compare, p.fid),
                           lambda: _bench(p, artifacts, progress))
        return Path(_stage(p, "readme", stages, _key(artifacts, grids, bench_dir, _report_hash(p)),
                           lambda: _readme(p, artifacts, grids)))
    except _NotSelected:
        return p.out


def _stage(p: Plan, name: str, selected, key: str, work):
    """Reuse the stamp's result when its key matches (or the stage is not selected); else run and stamp."""

    stamp = p.out / ".stages" / f"{name}.json"
    old = json.loads(stamp.read_text()) if stamp.is_file() else None
    if old and (old["key"] == key or name not in selected):
        return old["result"]
    if name not in selected:
        raise _NotSelected(name)
    t0 = time.perf_counter()
    result = work()
    write_text(stamp, json.dumps({"key": key, "result": result, "seconds": round(time.perf_counter() - t0, 1)}))
    return result


def _base_config(config: str) -> dict:
    """The config a new base model is trained from: a config.json file, a model dir or a shipped model's name."""

    path = Path(config)
    return checkpoint.read_config(path.parent if path.name.endswith(".json") else checkpoint.resolve(config))


def _teacher(p: Plan) -> str:
    return str(p.out / "models" / "pruned") if p.recipe.prune else p.base


def _train(p: Plan, progress: bool) -> str:

    return str(train.fit_model_config(_base_config(p.recipe.config), Path(p.base), progress=progress,
                                      steps=p.recipe.train_steps, threads=p.recipe.threads))


def _prune(p: Plan, progress: bool) -> str:

    return str(prune.recover(p.base, p.out / "models" / "pruned", prune_config=prune.PruneConfig(ratio=p.recipe.prune),
                             steps=p.recipe.prune_steps, progress=progress, threads=p.recipe.threads))


def _distill(p: Plan, progress: bool) -> str:

    return str(distill.distill(_teacher(p), p.out / "models" / "student", steps=p.recipe.distill_steps,
                               progress=progress, threads=p.recipe.threads))


def _key(*parts) -> str:
    """Content hash of a stage's inputs: model dirs count by their weights, artifact dirs by their artifact.json
    (which holds the model file's sha256), containers by their items; anything else by its value."""

    def part(x):
        if isinstance(x, dict):
            return {k: part(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [part(v) for v in x]
        if not isinstance(x, str):
            return x
        if x == "default" or (not x.startswith("/") and x in model_dir.list_shipped()):
            x = str(checkpoint.resolve(x))
        if model_dir.is_text_model(x):  # its weights and its autoencoder's
            return [artifact.file_sha256(f) for f in sorted(Path(x).glob("**/" + checkpoint.WEIGHTS_FILE))]
        if (Path(x) / checkpoint.WEIGHTS_FILE).is_file():
            return artifact.file_sha256(Path(x) / checkpoint.WEIGHTS_FILE)
        if text_to_image_dir.is_text_to_image(x):  # by every weights file and the scheduler's config
            return [artifact.file_sha256(f) for f in sorted(Path(x).glob("*/*.safetensors"))] + [
                artifact.file_sha256(Path(x) / "scheduler" / diffusers_dir.SCHEDULER_FILE)]
        if pipeline_manifest.is_pipeline(x):  # pipeline.json holds every component's artifact.json sha256
            return artifact.file_sha256(Path(x) / pipeline_manifest.MANIFEST_FILE)
        if diffusers_dir.is_diffusers(x):  # a diffusers folder counts by its UNet weights (+ where they are)
            return artifact.file_sha256(diffusers_dir.locate(x).unet / diffusers_dir.WEIGHTS)
        if (Path(x) / artifact.ARTIFACT_FILE).is_file():
            return artifact.file_sha256(Path(x) / artifact.ARTIFACT_FILE)
        return x

    return hashlib.sha256(json.dumps([part(x) for x in parts], sort_keys=True, default=str).encode()).hexdigest()


def _report_hash(p: Plan) -> str:
    f = p.out / "bench" / "report.json"
    return hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else ""


def _convert(p: Plan, progress: bool) -> dict[str, str]:

    out = {}
    items = p.targets
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(p.targets, desc="convert", unit="artifact")
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

    defaults = _defaults(p.deploy)
    req = generate.recommended(defaults, n=p.n, seed=0)
    grids = {}
    sources = {"eager": p.deploy, **{k: v for k, v in artifacts.items() if runs_here(k)
                                     and not v.startswith("skipped")}}
    for name, src in sources.items():
        images, labels = sample_open.from_model(src, request=req, progress=progress)
        grids[name] = str(images_io.save(p.out / "grids" / f"{name}.png", images, labels))
    return grids


def _defaults(model: str) -> dict:

    return checkpoint.load(model, weights=False).sampler_defaults


def _bench(p: Plan, artifacts: dict, progress: bool) -> str:

    targets = [p.deploy, *p.compare] + [v for k, v in artifacts.items() if not v.startswith("skipped")]
    bench.run(targets, out_dir=p.out / "bench", fid=p.fid, progress=progress)
    return str(p.out / "bench")


def _readme(p: Plan, artifacts: dict, grids: dict) -> str:

    path = p.out / "README.md"
    write_text(path, render(p, artifacts, grids))
    return str(path)
