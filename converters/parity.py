"""Parity gate: a converted Runner against the eager reference on fixed inputs spanning σ_min..σ_max."""

from __future__ import annotations

import math

import numpy as np

from edgediff.errors import EdgediffError
from edgediff.format.artifact import InputSpec
from edgediff.format.precond import Preconditioning
from edgediff.sampling.denoiser import Runner

MIN_DB = 35.0  # fp32 / fp16 artifacts must reach this PSNR against eager
MAX_DB = 200.0  # reported for bit-exact outputs (JSON has no infinity)


class ParityError(EdgediffError):
    """A converted model's outputs differ from the eager reference by more than the gate allows."""


def gate_for(precision: str) -> float:
    """The PSNR an artifact of `precision` must reach: MIN_DB for fp32/fp16; other precisions are recorded only."""
    return MIN_DB if precision in ("fp32", "fp16") else -math.inf


def ungated_note(precision: str, db: float | None) -> str | None:
    """A one-line note for an artifact below the fp32 gate that was written anyway (int8 and other compressed
    precisions are recorded, not gated); None when there is nothing to say."""
    if db is None or db >= MIN_DB or gate_for(precision) > -math.inf:
        return None
    return f"{precision}: {db:.1f} dB vs eager — recorded, not gated (fp32/fp16 must reach {MIN_DB:g} dB)"


def fixed_inputs(spec: InputSpec, precond: Preconditioning, *, num_classes: int = 0, n: int = 6,
                 seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """Seeded network inputs (c_in·(x0 + σ·ε), c_noise(σ), label[, w]) at n σ log-spaced from σ_min to σ_max."""
    rng = np.random.default_rng(seed)
    shape = spec["x"][0]
    sigmas = np.exp(np.linspace(math.log(precond.sigma_min), math.log(precond.sigma_max), n))
    out = []
    for sigma in sigmas:
        x0 = rng.uniform(-1.0, 1.0, size=shape)
        x = (precond.c_in(sigma) * (x0 + sigma * rng.standard_normal(shape))).astype(np.float32)
        t = np.full(shape[0], precond.c_noise(sigma), dtype=np.float32)
        label = rng.integers(0, num_classes + precond.has_null_label, size=shape[0]) if "label" in spec else None
        w = (rng.uniform(0.0, 4.0, size=shape[0]).astype(np.float32),) if "w" in spec else ()
        out.append((x, t, label, *w))
    return out


def psnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """PSNR of `out` against `ref`, with the peak taken as the reference's value range; capped at MAX_DB."""
    ref, out = np.asarray(ref, dtype=np.float64), np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        raise ParityError(f"output shape {out.shape} differs from the reference's {ref.shape}")
    mse = float(np.mean((ref - out) ** 2))
    if not math.isfinite(mse):
        return -math.inf
    peak = float(ref.max() - ref.min())
    if mse == 0.0:
        return MAX_DB
    if peak == 0.0:
        return -math.inf
    return min(MAX_DB, 20.0 * math.log10(peak) - 10.0 * math.log10(mse))


def measure(runner: Runner, reference_runner: Runner, spec: InputSpec, precond: Preconditioning, *,
            num_classes: int = 0) -> tuple[float, float]:
    """(worst PSNR in dB over the fixed inputs, max-abs error) of `runner` against `reference_runner`."""
    return measure_on(runner, reference_runner, fixed_inputs(spec, precond, num_classes=num_classes))


def measure_on(runner, reference, inputs_list) -> tuple[float, float]:
    """(worst PSNR in dB, max-abs error) of `runner` against `reference` over the given input tuples; `reference`
    is a runner or its outputs on them, computed before."""
    dbs, maxabs = [], 0.0
    for i, inputs in enumerate(inputs_list):
        ref = reference(*inputs) if callable(reference) else reference[i]
        out = runner(*inputs)
        dbs.append(psnr_db(ref, out))
        maxabs = max(maxabs, float(np.max(np.abs(np.asarray(ref, np.float64) - np.asarray(out, np.float64)))))
    return min(dbs), maxabs


def check(runner: Runner, reference_runner: Runner, spec: InputSpec, precond: Preconditioning, *,
          num_classes: int = 0, min_db: float | None = None) -> tuple[float, float]:
    """`measure`, raising ParityError when the PSNR is below `min_db` (None: MIN_DB; -inf: record only)."""
    return _gate(*measure(runner, reference_runner, spec, precond, num_classes=num_classes), min_db)


def check_on(runner, reference, inputs_list, *, min_db: float | None = None) -> tuple[float, float]:
    """`measure_on`, raising ParityError below `min_db` as `check` does."""
    return _gate(*measure_on(runner, reference, inputs_list), min_db)


def _gate(db: float, maxabs: float, min_db: float | None) -> tuple[float, float]:
    threshold = MIN_DB if min_db is None else min_db
    if not db >= threshold:
        raise ParityError(f"parity gate failed: {db:.1f} dB PSNR (max-abs error {maxabs:.3g}) against eager; "
                          f"expected >= {threshold:.1f} dB")
    return db, maxabs




