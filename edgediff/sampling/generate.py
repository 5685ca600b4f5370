"""Generate images from any Runner with the shared sampler, and save them as a labelled grid or an array."""

from __future__ import annotations

import numpy as np

from edgediff.errors import InputError
from edgediff.format.configs import Request
from edgediff.format.precond import Preconditioning
from edgediff.sampling.denoiser import Runner, make_denoiser
from edgediff.sampling.guidance import classifier_free_guidance
from edgediff.sampling.samplers import sample


def labels_for(req: Request, num_classes: int) -> np.ndarray | None:
    if num_classes == 0:
        if req.label is not None:
            raise InputError("this model is unconditional: --label is not accepted")
        return None
    if req.label is not None and not 0 <= req.label < num_classes:
        raise InputError(f"label {req.label} is out of range; expected 0..{num_classes - 1}")
    if req.label is not None:
        return np.full(req.n, req.label, dtype=np.int64)
    per_row = max(1, round(req.n / num_classes))
    return (np.arange(req.n) // per_row % num_classes).astype(np.int64)


def generate(runner: Runner, precond: Preconditioning, shape: tuple[int, int, int], req: Request, *,
             num_classes: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw req.n images of `shape` (C, H, W); one seeded numpy Generator makes them identical on every runtime."""
    labels = labels_for(req, num_classes)
    rng = np.random.default_rng(req.seed)
    chunks = range(0, req.n, req.batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"sample {req.sampler}×{req.steps}", unit="batch")
    out = []
    for start in chunks:
        lab = labels[start:start + req.batch_size] if labels is not None else None
        b = len(lab) if lab is not None else min(req.batch_size, req.n - start)
        if getattr(runner, "takes_guidance", False):  # guidance is an input: one call per step
            w = np.full(b, 1.0 if req.guidance is None else req.guidance, np.float32)
            cond = make_denoiser(runner, precond, label=lab, w=w)
        else:
            cond = make_denoiser(runner, precond, label=lab)
        if lab is not None and req.guidance not in (None, 1.0) and not getattr(runner, "takes_guidance", False):
            uncond = make_denoiser(runner, precond, label=np.full_like(lab, num_classes))
            cond = classifier_free_guidance(cond, uncond, req.guidance)
        out.append(sample(cond, (b, *shape), sampler=req.sampler, steps=req.steps, rng=rng,
                          sigma_min=precond.sigma_min, sigma_max=precond.sigma_max, sigmas=req.sigmas,
                          gamma=req.gamma))
    return np.concatenate(out).astype(np.float32), labels








def with_defaults(request: Request, defaults: dict) -> Request:
    """Fill what `request` leaves open from a model's sampler defaults: the guidance scale, and the model's tuned
    σ schedule when the request uses the recommended sampler and step count."""
    import dataclasses

    changes = {}
    if request.guidance is None:
        changes["guidance"] = float(defaults.get("guidance", 1.0))
    if (request.sigmas is None and defaults.get("sigmas") is not None
            and (request.sampler, request.steps) == (defaults.get("sampler"), defaults.get("steps"))):
        changes["sigmas"] = tuple(defaults["sigmas"])
    if request.gamma is None and defaults.get("gamma") is not None and request.sampler == defaults.get("sampler"):
        changes["gamma"] = float(defaults["gamma"])
    return dataclasses.replace(request, **changes) if changes else request


def recommended(defaults: dict, **overrides) -> Request:
    """The Request a model recommends (sampler, steps, guidance, tuned σ) with `overrides` (n, seed, batch_size)."""
    keep = {k: defaults[k] for k in ("sampler", "steps", "guidance", "sigmas", "gamma") if defaults.get(k) is not None}
    if any(overrides.get(k, keep.get(k)) != keep.get(k) for k in ("sampler", "steps")):
        keep.pop("sigmas", None)  # a tuned schedule belongs to the recommended sampler and step count only
    if overrides.get("sampler", keep.get("sampler")) != keep.get("sampler"):
        keep.pop("gamma", None)  # and γ to the recommended sampler
    return Request(**{**keep, **overrides})








