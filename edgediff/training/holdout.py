"""The seeded train / held-out split shared by every dataset (MNIST, emoji, image folders)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from edgediff.errors import InputError

D = TypeVar("D")


def split(data: D, *, test_fraction: float = 0.1, seed: int = 0) -> tuple[D, D]:
    """Random (not writer-ordered) train/test split, identical for the same seed; `data` has len() and subset()."""
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(data))
    n_test = max(1, round(len(data) * test_fraction))
    return data.subset(np.sort(order[n_test:])), data.subset(np.sort(order[:n_test]))
