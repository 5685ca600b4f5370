"""Checks every Runner applies before handing arrays to a runtime (native code never sees bad input)."""

from __future__ import annotations

import numpy as np

from .errors import InputError


def check_runner_inputs(x, t, label, *, channels: int, resolution: int, num_classes: int,
                        batch: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and normalise (x float32 [B,C,H,W], t float32 [B], label int [B] | None); return them."""
    x, t = np.asarray(x), np.asarray(t)
    want = (batch if batch is not None else "B", channels, resolution, resolution)
    if x.ndim != 4 or x.shape[1:] != want[1:] or (batch is not None and x.shape[0] != batch):
        raise InputError(f"x has shape {x.shape}; expected {want}")
    if x.dtype != np.float32 or t.dtype != np.float32:
        raise InputError(f"x and t must be float32, got {x.dtype} and {t.dtype}")
    if t.shape != (x.shape[0],):
        raise InputError(f"t has shape {t.shape}; expected ({x.shape[0]},), one noise level per image")
    if not (np.isfinite(x).all() and np.isfinite(t).all()):
        raise InputError("x or t contains NaN or Inf; expected finite values")
    if label is not None:
        label = np.asarray(label)
        if label.shape != (x.shape[0],) or not np.issubdtype(label.dtype, np.integer):
            raise InputError(f"label must be integers of shape ({x.shape[0]},), got {label.dtype} {label.shape}")
        if num_classes == 0 or label.min() < 0 or label.max() > num_classes:
            raise InputError(f"labels must lie in 0..{num_classes} ({num_classes} = unconditional); "
                             f"got {label.min()}..{label.max()}")
    return np.ascontiguousarray(x), np.ascontiguousarray(t), label
