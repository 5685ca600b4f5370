"""Consistency distillation (Song et al. 2023, Algorithm 2) with guidance folded in (LCM, Luo et al. 2023).

The student f(x, σ, label, w) = c_skip(σ)·x + c_out(σ)·F(c_in·x, c_noise, label, w) takes the guidance scale `w`
as an input, so a guided image costs one network call per step. Each training step noises a real image to σ_{n+1},
moves it to σ_n with one guided Heun step of the frozen teacher, and pulls the student's output at σ_{n+1} towards
the EMA target's output at σ_n under the pseudo-Huber distance (improved consistency training, Song & Dhariwal
2023). The boundary condition f(x, σ_min) = x is the preconditioning (`ConsistencyPreconditioning`).

`method="trajectory"` trains the same student on ground-truth targets instead of bootstrapped ones: states of the
guided teacher's own ODE trajectories (`edgediff.trajectories`) regressed onto their endpoints (Luhman & Luhman 2021
at every noise level). No target network and no teacher call per step: the targets are solved once, up front.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from edgediff.errors import InputError
from edgediff.format.precond import ConsistencyPreconditioning, Preconditioning
from edgediff.models import checkpoint
from edgediff.models.unet import UNet
from edgediff.sampling.samplers import euler_step, heun_step
from edgediff.sampling.schedules import karras_sigmas
from edgediff.training import data as datasets
from edgediff.training import loop as train
from edgediff.training.teacher import denoise, guided_teacher
from edgediff.training.trajectories import TrajectoryConfig

SOLVERS = ("heun", "euler")
METHODS = ("cd", "trajectory")


@dataclass(frozen=True, kw_only=True)
class DistillConfig:
    scales: int = 18  # N: Karras discretisation of [σ_min, σ_max] the teacher steps along
    rho: float = 7.0
    w_min: float = 1.0  # guidance scales drawn uniformly from [w_min, w_max]
    w_max: float = 3.0
    solver: str = "heun"
    method: str = "cd"  # "cd": consistency distillation; "trajectory": regression onto teacher ODE endpoints
    trajectories: int = 8000  # trajectory method: teacher trajectories solved up front
    substeps: int = 2  # trajectory method: DPM-Solver++(2M) steps per Karras interval
    top_fraction: float = 0.25  # trajectory method: share of each batch at σ_max (the 1-step input)

    def __post_init__(self):
        if self.scales < 2 or not 0 <= self.w_min <= self.w_max or self.solver not in SOLVERS:
            raise InputError(f"need scales >= 2, 0 <= w_min <= w_max and solver in {SOLVERS}; got {self}")
        if self.method not in METHODS or not 0 <= self.top_fraction <= 1:
            raise InputError(f"need method in {METHODS} and 0 <= top_fraction <= 1; got {self}")

    def trajectory_config(self, *, seed: int, label_dropout: float, bf16: bool, guided: bool = True):
        """The trajectory store this recipe needs; `guided=False` for a teacher without a null class (no CFG)."""
        extra = {} if guided else {"guided_fraction": 0.0}
        return TrajectoryConfig(count=self.trajectories, levels=self.scales, substeps=self.substeps, rho=self.rho,
                                w_min=self.w_min, w_max=self.w_max, label_dropout=label_dropout, seed=seed,
                                bf16=bf16, **extra)


def karras_grid(cfg: DistillConfig, precond: Preconditioning) -> torch.Tensor:
    """σ_1 = σ_min < … < σ_N = σ_max (Karras et al. 2022, Eq. 5), ascending: the sampler's grid reversed."""
    sigmas = karras_sigmas(cfg.scales, sigma_min=precond.sigma_min, sigma_max=precond.sigma_max, rho=cfg.rho)
    return torch.tensor(sigmas[-2::-1], dtype=torch.float64).float()








def solver_step(teacher, precond, x, s, s_next, label, w, null_label: int, *, solver: str, bf16: bool):
    """One Euler or Heun step of the guided probability-flow ODE from σ=s to σ=s_next (per sample): the
    deploy-time sampler's own step functions, on torch tensors with per-sample σ."""
    b = lambda v: v[:, None, None, None]  # noqa: E731

    def guided(x_, sigma):
        return guided_teacher(teacher, precond, x_, sigma.flatten(), label, w, null_label, bf16=bf16)

    x0 = guided(x, b(s))
    if solver == "euler":
        return euler_step(x, x0, b(s), b(s_next))
    return heun_step(guided, x, x0, b(s), b(s_next))


def pseudo_huber(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sqrt(‖a−b‖² + c²) − c per sample, c = 0.00054·sqrt(dim) (Song & Dhariwal 2023), averaged."""
    dim = a[0].numel()
    c = 0.00054 * math.sqrt(dim)
    return (((a - b) ** 2).flatten(1).sum(1) + c * c).sqrt().sub(c).mean()


def cd_loss(teacher, teacher_precond: Preconditioning, cfg: DistillConfig, *, precision: str, null_label: int):
    """The consistency-distillation LossFn for `edgediff.training.loop.run` (batch.ema is the target network θ⁻)."""
    student_precond = ConsistencyPreconditioning(**teacher_precond.base_fields())
    grid, bf16 = karras_grid(cfg, teacher_precond), precision == "bf16"

    def loss(batch) -> torch.Tensor:
        n = batch.randint(cfg.scales - 1)
        s, s_next = grid[n + 1], grid[n]  # σ_{n+1} > σ_n
        w = cfg.w_min + (cfg.w_max - cfg.w_min) * batch.rand()
        x = batch.x0 + s.to(batch.x0.device)[:, None, None, None] * batch.randn(*batch.x0.shape[1:])
        with torch.no_grad():
            x_hat = solver_step(teacher, teacher_precond, x, s, s_next, batch.label, w, null_label,
                                solver=cfg.solver, bf16=bf16)
            target = denoise(batch.ema, student_precond, x_hat, s_next, batch.label, w, bf16=bf16)
        pred = denoise(batch.net, student_precond, x, s, batch.label, w, bf16=bf16)
        return pseudo_huber(pred, target)

    return loss


def trajectory_loss(store, teacher_precond: Preconditioning, cfg: DistillConfig, *, precision: str):
    """The trajectory-distillation LossFn: pseudo-Huber(f_θ(x_traj(σ_j), σ_j, label, w), x_traj(0))."""
    student_precond = ConsistencyPreconditioning(**teacher_precond.base_fields())
    bf16 = precision == "bf16"

    def loss(batch) -> torch.Tensor:
        i = batch.randint(len(store)).cpu()
        j = torch.where(batch.rand().cpu() < cfg.top_fraction, 0, batch.randint(len(store.sigmas)).cpu())
        dev = batch.x0.device
        pred = denoise(batch.net, student_precond, store.states[i, j].to(dev), store.sigmas[j],
                       store.label[i].to(dev), store.w[i].to(dev), bf16=bf16)
        return pseudo_huber(pred, store.x0[i].to(dev))

    return loss


def distill(model, out: Path, *, config: DistillConfig = DistillConfig(), steps: int = 2000, batch_size: int = 64,
            lr: float = 1e-4, target_ema: float = 0.95, init=None, resume: bool = True, progress: bool = True,
            device: str = "cpu", **train_overrides) -> Path:
    """Distil a model directory into a guidance-conditioned consistency student in `out` (resumable).

    `init` (a student model dir) starts from its weights instead of the teacher's; with `method="trajectory"`
    `target_ema` is the EMA rate of the saved weights (there is no target network).
    """

    teacher = checkpoint.load(model)
    if teacher.unet.guidance_embed or teacher.precond.kind not in ("edm", "vp"):
        raise InputError(f"{model} is already a consistency student; distil from an EDM or diffusers teacher")
    if teacher.is_diffusers and config.method != "trajectory":
        raise InputError(f"{model} is a diffusers model: distil it with --method trajectory (data-free, the student "
                         f"learns the teacher's own ODE trajectories); 'cd' needs the teacher's training images")
    training = {} if teacher.is_diffusers else teacher.meta.get("training", {})
    cfg = train.TrainConfig(**{**training, "steps": steps, "batch_size": batch_size,
                               "lr": lr, "warmup_steps": 100, "checkpoint_every": max(1, min(100, steps)),
                               **({"label_dropout": 0.0} if not teacher.precond.has_null_label else {}),
                               **{k: v for k, v in train_overrides.items() if v is not None}})
    torch.manual_seed(cfg.seed)  # the fresh w-embedding's initialisation is part of the recipe
    if teacher.is_diffusers:  # a student of edgediff's own family, the teacher's shape, trained from scratch
        from edgediff.models.diffusers import student_config

        student = UNet(student_config(teacher.unet))
    else:
        student = UNet(teacher.unet.replace(guidance_embed=True))
        student.load_state_dict(teacher.net.state_dict(), strict=False)  # w_mlp starts at zero: f ≈ teacher's D
    init_name = None
    if init is not None:
        start = checkpoint.load(init)
        if start.unet != student.config or start.precond.kind != "consistency":
            raise InputError(f"--init {init} is not a consistency student of {model}'s architecture")
        student.load_state_dict(start.net.state_dict())
        init_name = start.meta.get("name", str(init))
    precond = ConsistencyPreconditioning(**teacher.precond.base_fields())
    data_name = f"trajectories of {teacher.meta.get('name', model)}" if teacher.is_diffusers else cfg.data
    meta = {"name": Path(out).name, "precond": precond.to_dict(), "data": data_name,
            **({"class_names": list(teacher.class_names)} if teacher.class_names else {}),
            "training": dataclasses.asdict(cfg), "distillation": {**dataclasses.asdict(config),
                                                                  "teacher": teacher.meta.get("name", str(model)),
                                                                  "target_ema": target_ema,
                                                                  "init": init_name},
            "sampler_defaults": {"sampler": "consistency", "steps": 2, "guidance": 1.0}}
    teacher.net.eval().requires_grad_(False)
    if config.method == "trajectory":
        from edgediff.training import trajectories

        tcfg = config.trajectory_config(seed=cfg.seed, label_dropout=cfg.label_dropout, bf16=cfg.precision == "bf16",
                                        guided=teacher.precond.has_null_label and teacher.unet.num_classes > 0)
        store = trajectories.generate(teacher, Path(out) / "trajectories", tcfg, progress=progress)
        loss = trajectory_loss(store, teacher.precond, config, precision=cfg.precision)
        data = (datasets.ImageData(store.x0.float().numpy(), store.label.numpy(), teacher.class_names or ("",) *
                                   teacher.unet.num_classes) if teacher.is_diffusers else _data(cfg, teacher))
    else:
        data = _data(cfg, teacher)
        loss = cd_loss(teacher.net, teacher.precond, config, precision=cfg.precision,
                       null_label=teacher.unet.null_label)
    return train.run(student.train(), cfg, Path(out), data=data, loss=loss, meta=meta, resume=resume,
                     progress=progress, device=device, ema_decay=target_ema)


def _data(cfg, teacher) -> datasets.ImageData:
    """The teacher's training images (what consistency distillation noises)."""
    return datasets.load(cfg.data, resolution=teacher.unet.resolution, channels=teacher.unet.in_channels)
