"""Checks every Runner applies before handing arrays to a runtime (native code never sees bad input)."""

from __future__ import annotations

import numpy as np

from .errors import InputError

MAX_BATCH = 65536


def check_runner_inputs(x, t, label, *, channels: int, resolution: int, num_classes: int,
                        batch: int | None = None,
                        allow_nonfinite: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and normalise (x float32 [B,C,H,W], t float32 [B], label int [B] | None); return them.

    `batch` is the artifact's static batch size (None: any B from 1 to MAX_BATCH). NaN or Inf in x or t is refused
    unless `allow_nonfinite` (for callers probing how a runtime propagates them); labels must lie in
    0..num_classes, where num_classes means "unconditional" (classifier-free guidance's null label).
    """
    x, t = _array(x, "x"), _array(t, "t")
    want = (batch if batch is not None else "B", channels, resolution, resolution)
    if x.ndim != 4 or x.shape[1:] != want[1:] or (batch is not None and x.shape[0] != batch):
        raise InputError(f"x has shape {x.shape}; expected {want}")
    if not 1 <= x.shape[0] <= MAX_BATCH:
        raise InputError(f"x holds a batch of {x.shape[0]} images; expected 1 to {MAX_BATCH}")
    if x.dtype != np.float32 or t.dtype != np.float32:
        raise InputError(f"x and t must be float32, got {x.dtype} and {t.dtype}")
    if t.shape != (x.shape[0],):
        raise InputError(f"t has shape {t.shape}; expected ({x.shape[0]},), one noise level per image")
    if not allow_nonfinite and not (np.isfinite(x).all() and np.isfinite(t).all()):
        raise InputError("x or t contains NaN or Inf; expected finite values")
    if label is not None:
        label = _array(label, "label")
        if label.shape != (x.shape[0],) or not np.issubdtype(label.dtype, np.integer):
            raise InputError(f"label must be integers of shape ({x.shape[0]},), got {label.dtype} {label.shape}")
        if num_classes == 0:
            raise InputError("this model is unconditional: label must be None")
        if label.min() < 0 or label.max() > num_classes:
            raise InputError(f"labels must lie in 0..{num_classes} ({num_classes} = unconditional); "
                             f"got {label.min()}..{label.max()}")
    return np.ascontiguousarray(x), np.ascontiguousarray(t), label


def _array(value, name: str) -> np.ndarray:
    """np.asarray that turns ragged lists, strings and odd objects into an InputError."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as e:
        raise InputError(f"{name} is not an array ({e}); expected a numpy array") from None
    if arr.dtype.hasobject:
        raise InputError(f"{name} has dtype object; expected a numeric numpy array")
    return arr


def check_guidance(w, batch: int) -> np.ndarray:
    """Guidance scales for a guidance-embedding model: float32 [batch], finite, >= 0 (None = 1, no guidance)."""
    if w is None:
        return np.ones(batch, np.float32)
    w = np.asarray(w)
    if w.shape != (batch,) or not np.issubdtype(w.dtype, np.floating):
        raise InputError(f"w must be floats of shape ({batch},), one guidance scale per image; got {w.dtype} {w.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise InputError("w (guidance scale) must be finite and >= 0")
    return np.ascontiguousarray(w, dtype=np.float32)
