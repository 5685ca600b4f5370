"""A Runner compiled for one static batch size, serving any batch (Intel NPU and XNNPACK graphs are static)."""

from __future__ import annotations

import numpy as np

from edgediff.sampling.denoiser import Runner


def static_batch(runner: Runner, batch: int) -> Runner:
    """Serve any batch size from a Runner compiled for exactly `batch` (split, pad the tail, crop)."""

    class Run:
        takes_guidance = getattr(runner, "takes_guidance", False)

        def __call__(self, *arrays):  # (x, t[, label[, w]]) or a pipeline component's inputs
            n = arrays[0].shape[0]
            if n == batch:
                return runner(*arrays)
            pad = -n % batch

            def padded(a):
                return None if a is None else (np.concatenate([a, np.repeat(a[-1:], pad, 0)]) if pad else a)

            parts = [padded(a) for a in arrays]
            outs = [runner(*(None if a is None else a[i:i + batch] for a in parts)) for i in range(0, n + pad, batch)]
            return np.concatenate(outs)[:n]

    return Run()
