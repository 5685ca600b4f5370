"""Teacher probability-flow ODE trajectories, the targets of trajectory distillation (Luhman & Luhman 2021).

One trajectory is a noise image x(σ_max) carried by the guided teacher's DPM-Solver++(2M) to σ = 0 on a Karras grid
refined `substeps` times, with x recorded at each of the `levels` coarse Karras levels (σ_max … σ_min) and the clean
endpoint. The store is written in chunks (safetensors, temp + rename), so an interrupted run resumes at the first
missing chunk; every chunk is seeded by its index alone, so a resumed store equals an uninterrupted one, and a
larger `count` (a multiple of `chunk` before) extends a store with new trajectories instead of re-solving it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from edgediff.errors import InputError
from edgediff.format.files import atomic_path, write_text
from edgediff.format.precond import Preconditioning
from edgediff.sampling.samplers import sample_dpmpp_2m
from edgediff.sampling.schedules import karras_sigmas
from edgediff.training.teacher import denoise, guided_teacher

CONFIG = "trajectories.json"


@dataclass(frozen=True, kw_only=True)
class TrajectoryConfig:
    count: int = 8000  # trajectories
    levels: int = 17  # coarse Karras levels recorded; 17 puts the 1-, 2- and 4-step consistency σ on the grid
    substeps: int = 2  # solver steps per coarse interval
    rho: float = 7.0
    chunk: int = 500
    guided_fraction: float = 0.5  # trajectories with w ~ U[w_min, w_max] (the rest have w = 1, no guidance)
    w_min: float = 1.0
    w_max: float = 3.0
    label_dropout: float = 0.1  # trajectories of the unconditional model (label = null)
    seed: int = 0
    bf16: bool = True

    def __post_init__(self):
        if self.count < 1 or self.levels < 2 or self.substeps < 1 or self.chunk < 1:
            raise InputError(f"need count, chunk, substeps >= 1 and levels >= 2; got {self}")
        if not (0 <= self.guided_fraction <= 1 and 0 <= self.label_dropout <= 1 and 0 <= self.w_min <= self.w_max):
            raise InputError(f"fractions must be in [0, 1] and 0 <= w_min <= w_max; got {self}")


@dataclass(frozen=True)
class Trajectories:
    """states [K, levels−1, C, H, W] at `sigmas` (descending, σ_min excluded), x0 [K, C, H, W], label [K], w [K]."""

    sigmas: torch.Tensor
    states: torch.Tensor
    x0: torch.Tensor
    label: torch.Tensor
    w: torch.Tensor

    def __len__(self) -> int:
        return len(self.x0)


def coarse_sigmas(cfg: TrajectoryConfig, precond: Preconditioning) -> list[float]:

    return karras_sigmas(cfg.levels, sigma_min=precond.sigma_min, sigma_max=precond.sigma_max, rho=cfg.rho)[:-1]


def generate(teacher, out: Path, cfg: TrajectoryConfig = TrajectoryConfig(), *, progress: bool = True) -> Trajectories:
    """Write (or finish) the trajectory store of `teacher` (a loaded EDM model) in `out` and return it."""
    from tqdm.auto import tqdm

    out = Path(out)
    _check_config(out, cfg, teacher)
    chunks = [(i, min(cfg.chunk, cfg.count - i * cfg.chunk)) for i in range(-(-cfg.count // cfg.chunk))]
    todo = [(i, n) for i, n in chunks if not _chunk_path(out, i).exists()]
    with tqdm(total=cfg.count, initial=cfg.count - sum(n for _, n in todo), desc="trajectories", unit="traj",
              disable=not progress, dynamic_ncols=True) as bar:
        for i, n in todo:
            _write_chunk(_chunk_path(out, i), _solve_chunk(teacher, cfg, i, n))
            bar.update(n)
    return load(out)


def load(out: Path) -> Trajectories:
    """Read a finished store written by `generate`."""
    from safetensors.torch import load_file

    out = Path(out)
    saved = json.loads((out / CONFIG).read_text())
    cfg = TrajectoryConfig(**saved["config"])
    paths = [_chunk_path(out, i) for i in range(-(-cfg.count // cfg.chunk))]
    if missing := [p.name for p in paths if not p.exists()]:
        raise InputError(f"{out} is an unfinished trajectory store (missing {missing[0]}); run generate to finish it")
    parts = [load_file(p) for p in paths]
    cat = lambda k: torch.cat([p[k] for p in parts])  # noqa: E731
    return Trajectories(torch.tensor(saved["sigmas"][:-1]), cat("states"), cat("x0"), cat("label"), cat("w"))


def _solve_chunk(teacher, cfg: TrajectoryConfig, index: int, n: int) -> dict[str, torch.Tensor]:

    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + index)
    p, u = teacher.precond, teacher.unet
    guided = torch.rand(n, generator=gen) < cfg.guided_fraction
    w = torch.where(guided, cfg.w_min + (cfg.w_max - cfg.w_min) * torch.rand(n, generator=gen), torch.ones(n))
    label = torch.randint(max(u.num_classes, 1), (n,), generator=gen)  # all 0 (ignored) for unconditional
    label[torch.rand(n, generator=gen) < cfg.label_dropout] = u.null_label
    x = torch.randn(n, u.in_channels, u.resolution, u.resolution, generator=gen) * p.sigma_max
    fine = karras_sigmas((cfg.levels - 1) * cfg.substeps + 1, sigma_min=p.sigma_min, sigma_max=p.sigma_max,
                         rho=cfg.rho)
    net, g = teacher.net.eval(), guided & (label != u.null_label)
    states = []

    def denoiser(xs, s):
        sigma, out = torch.full((n,), float(s)), torch.empty_like(xs)
        if (~g).any():
            out[~g] = denoise(net, p, xs[~g], sigma[~g], label[~g], bf16=cfg.bf16)
        if g.any():  # cond and uncond in one batched call, for the guided rows only
            out[g] = guided_teacher(net, p, xs[g], sigma[g], label[g], w[g], u.null_label, bf16=cfg.bf16)
        return out

    def record(i, s, xs, x0):
        if i % cfg.substeps == 0 and i < len(fine) - 2:  # coarse levels above σ_min
            states.append(xs.clone())

    with torch.no_grad():
        x0 = sample_dpmpp_2m(denoiser, x, fine, callback=record)
    return {"states": torch.stack(states, 1).contiguous(), "x0": x0.contiguous(), "label": label, "w": w}


def _chunk_path(out: Path, index: int) -> Path:
    return out / f"chunk-{index:05d}.safetensors"


def _write_chunk(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file


    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


def _check_config(out: Path, cfg: TrajectoryConfig, teacher) -> None:
    """Write out/trajectories.json, or refuse to extend a store made with other settings or another teacher."""

    want = {"config": dataclasses.asdict(cfg), "teacher": teacher.meta.get("name", ""),
            "sigmas": coarse_sigmas(cfg, teacher.precond)}
    file, want = out / CONFIG, json.loads(json.dumps(want))
    if file.exists():
        have = json.loads(file.read_text())
        count = have["config"]["count"]
        grown = {**have, "config": {**have["config"], "count": cfg.count}}
        if grown != want or cfg.count < count or (cfg.count > count and count % cfg.chunk):
            raise InputError(f"{out} holds trajectories made with other settings ({have['config']}, teacher "
                             f"{have['teacher']!r}); use another directory or delete it")
        if cfg.count == count:
            return
    write_text(file, json.dumps(want, indent=2) + "\n")
