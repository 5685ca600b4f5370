"""Calibration data for quantizers: the network's inputs recorded along real few-step sampling trajectories.

Random inputs are a poor stand-in for what a deployed denoiser sees (early steps are near-Gaussian noise scaled by
c_in, late steps are nearly clean digits), so every quantizer is calibrated on `(x, t, label)` triples recorded
while the model itself samples with the samplers, step counts, labels and guidance it will be deployed with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgediff.errors import InputError, ModelFileError
from edgediff.format.configs import Request
from edgediff.format.files import atomic_path
from edgediff.format.precond import Preconditioning
from edgediff.models.eager import EagerRunner
from edgediff.sampling.denoiser import Runner
from edgediff.sampling.generate import generate, with_defaults

CALIBRATION_FILE = "calibration.npz"


@dataclass(frozen=True)
class Calibration:
    """N network inputs: x float32 [N,C,H,W], t float32 [N], label int64 [N] (None if unconditional) and, for
    guidance-embedding students, the guidance scales w float32 [N]."""

    x: np.ndarray
    t: np.ndarray
    label: np.ndarray | None
    source: str = "trajectory"
    w: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, batch: int):
        """Yield (x, t, label, w) in chunks of exactly `batch` (the tail is dropped: static-shape graphs)."""
        for i in range(0, len(self) - batch + 1, batch):
            part = slice(i, i + batch)
            yield self.x[part], self.t[part], _take(self.label, part), _take(self.w, part)

    def subset(self, n: int, *, seed: int = 0) -> Calibration:
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        return Calibration(self.x[idx], self.t[idx], _take(self.label, idx), self.source, _take(self.w, idx))


def _take(a: np.ndarray | None, idx):
    return None if a is None else a[idx]


class Recorder:
    """A Runner that passes calls through to `runner` and keeps a copy of every input it sees."""

    def __init__(self, runner: Runner):
        self.runner, self.calls = runner, []
        self.takes_guidance = getattr(runner, "takes_guidance", False)

    def __call__(self, x, t, label=None, w=None):
        self.calls.append((np.array(x, np.float32), np.array(t, np.float32),
                           None if label is None else np.array(label, np.int64),
                           None if w is None else np.array(w, np.float32)))
        return self.runner(x, t, label) if w is None else self.runner(x, t, label, w)

    def calibration(self) -> Calibration:
        if not self.calls:
            raise InputError("the recorder saw no calls; sample something through it first")
        xs, ts, labels, ws = zip(*self.calls, strict=True)
        label = None if labels[0] is None else np.concatenate(labels)
        w = None if ws[0] is None else np.concatenate(ws)
        return Calibration(np.concatenate(xs), np.concatenate(ts), label, w=w)


def collect(runner: Runner, precond: Preconditioning, shape: tuple[int, int, int], *, num_classes: int,
            samplers: tuple[tuple[str, int], ...] = (("dpmpp_2m", 10), ("euler", 4)),
            guidance: tuple[float, ...] = (1.0, 2.0), per_run: int = 10, seed: int = 0,
            recommended: dict | None = None) -> Calibration:
    """Record the inputs of `per_run` images per (sampler, steps, guidance), every label cycled; with
    `recommended` (a model's sampler_defaults) also along the deployed sampler, tuned σ schedule included."""

    rec = Recorder(runner)
    runs = [(sampler, steps, {}) for sampler, steps in samplers]
    if recommended and recommended.get("sampler"):
        runs.append((recommended["sampler"], int(recommended.get("steps", 10)), recommended))
    for i, (sampler, steps, defaults) in enumerate(runs):
        for j, g in enumerate(guidance if num_classes and precond.has_null_label else (1.0,)):
            req = with_defaults(Request(n=per_run, seed=seed + 100 * i + j, sampler=sampler, steps=steps,
                                        guidance=g, batch_size=per_run), defaults)
            generate(rec, precond, shape, req, num_classes=num_classes)
    return rec.calibration()


def random_inputs(like: Calibration, *, seed: int = 0) -> Calibration:
    """The naive baseline: standard-normal x, t uniform over the recorded range, random labels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(like.x.shape, dtype=np.float32)
    t = rng.uniform(like.t.min(), like.t.max(), like.t.shape).astype(np.float32)
    label = None if like.label is None else rng.integers(0, like.label.max() + 1, like.label.shape)
    w = None if like.w is None else rng.uniform(0.0, 4.0, like.w.shape).astype(np.float32)
    return Calibration(x, t, label, source="random", w=w)


def save(path: Path, calib: Calibration) -> Path:
    """Write an .npz (no pickled objects) atomically."""

    arrays = {"x": calib.x, "t": calib.t, "source": np.array(calib.source)}
    for name in ("label", "w"):
        if getattr(calib, name) is not None:
            arrays[name] = getattr(calib, name)
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return Path(path)


def load(path: Path) -> Calibration:
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            label = z["label"] if "label" in z.files else None
            w = z["w"].astype(np.float32) if "w" in z.files else None
            return Calibration(z["x"].astype(np.float32), z["t"].astype(np.float32), label, str(z["source"]), w)
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise ModelFileError(f"{path} is not a calibration .npz written by edgediff ({e})") from None


def fingerprint(calib: Calibration) -> str:
    """sha256 over the arrays: part of an artifact's reuse key, so new calibration data rebuilds it."""
    import hashlib

    h = hashlib.sha256(calib.source.encode())
    for a in (calib.x, calib.t, calib.label, calib.w):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def options_for(precision: str, calib: Calibration | None, *, needs: tuple[str, ...]) -> dict:
    """Artifact options describing the calibration of a `precision` build (which must have one iff it needs it)."""
    if precision in needs and calib is None:
        raise InputError(f"precision {precision} needs calibration data (converters.calibration.collect); got none")
    if precision not in needs and calib is not None:
        raise InputError(f"precision {precision} takes no calibration data; only {', '.join(needs)} do")
    if calib is None:
        return {}
    return {"calibration": {"source": calib.source, "samples": len(calib), "sha256": fingerprint(calib)}}


def for_model(net, precond: Preconditioning, shape: tuple[int, int, int], *, num_classes: int,
              kind: str | Path = "trajectory", samples: int = 256, seed: int = 0,
              sampler_defaults: dict | None = None) -> Calibration:
    """Calibration for converting `net`: 'trajectory' (recorded while it samples, along the model's recommended
    sampler too when `sampler_defaults` is given), 'random', or an .npz path."""

    if kind not in ("trajectory", "random"):
        return load(Path(kind))
    runner = EagerRunner(net, channels=shape[0], resolution=shape[1], num_classes=num_classes)
    recorded = collect(runner, precond, shape, num_classes=num_classes, seed=seed, recommended=sampler_defaults)
    calib = recorded if kind == "trajectory" else random_inputs(recorded, seed=seed)
    return calib.subset(samples, seed=seed)
