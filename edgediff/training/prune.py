"""Structural channel pruning of the UNet (Diff-Pruning, Fang et al. 2023) on torch-pruning's dependency graph.

The result is a physically smaller `UNet` — never masks. torch-pruning couples every tensor that shares a channel
axis (residual adds, skip concatenations, GroupNorm affine parameters), one pruning ratio applies to every coupled
group and widths are rounded to multiples of `round_to`, so the pruned network is again a `UNet(config)` whose
`channels` and per-block `widths` are recorded in the saved config: `UNet(config)` + safetensors rebuilds it.
Attention's inner q/k/v width is left whole (it is small at 8×8 and torch-pruning cannot trace its reshapes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from edgediff.errors import InputError, MissingDependencyError
from edgediff.format.configs import UNetConfig
from edgediff.models import checkpoint
from edgediff.models.unet import Attention, Block, UNet, count_params, flops_per_step
from edgediff.training import data as datasets
from edgediff.training import loop as train
from edgediff.training.edm import edm, edm_loss

IMPORTANCES = ("magnitude", "taylor")


@dataclass(frozen=True, kw_only=True)
class PruneConfig:
    ratio: float = 0.5
    importance: str = "magnitude"
    round_to: int = 8
    taylor_batches: int = 4

    def __post_init__(self):
        if not 0.0 < self.ratio < 1.0:
            raise InputError(f"pruning ratio must lie in (0, 1), got {self.ratio}")
        if self.importance not in IMPORTANCES:
            raise InputError(f"unknown importance {self.importance!r}; expected one of {IMPORTANCES}")
        if self.round_to < 1:
            raise InputError(f"round_to must be >= 1, got {self.round_to}")


def prune(net: UNet, cfg: PruneConfig = PruneConfig(), *, grads_fn=None) -> UNet:
    """Return a new, physically smaller UNet with `cfg.ratio` of the channels of every coupled group removed.

    `grads_fn(net)` must populate `.grad` of the parameters (e.g. EDM loss backward) for Taylor importance.
    """
    tp = _torch_pruning()
    net = _copy(net)
    if cfg.importance == "taylor":
        if grads_fn is None:
            raise InputError("Taylor importance needs grads_fn to compute gradients on training data")
        net.zero_grad(set_to_none=True)
        grads_fn(net)
        importance = tp.importance.GroupTaylorImportance()
    else:
        importance = tp.importance.GroupMagnitudeImportance(p=2)
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=_example(net.config))
    ignored = _ignored(net)
    plans = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[torch.nn.Conv2d, torch.nn.Linear]):
        root, handler = group[0].dep.target.module, group[0].dep.handler
        channels = graph.get_out_channels(root)
        keep = _kept_width(channels, cfg)
        if keep >= channels:
            continue
        plans.append((root, handler, _drop(importance(group), keep, _norm_groups(group, channels))))
    for root, handler, drop in plans:  # score everything first, then cut (scores are of the unpruned net)
        graph.get_pruning_group(root, handler, idxs=drop).prune()
    net.zero_grad(set_to_none=True)
    return rebuild(net)


def _norm_groups(group, channels: int) -> int:
    """GroupNorm groups over this channel axis (1 if none): channels are then dropped evenly from every group."""
    norms = [d.target.module for d, _ in group if isinstance(d.target.module, torch.nn.GroupNorm)
             and d.target.module.num_channels == channels]
    return max((n.num_groups for n in norms), default=1)


def _drop(score: torch.Tensor, keep: int, groups: int) -> list[int]:
    """Lowest-importance channels, the same number from each GroupNorm group so membership is preserved."""
    channels = len(score)
    if groups > 1 and channels % groups == 0 and keep % groups == 0:
        per = channels // groups
        order = torch.argsort(score.view(groups, per), dim=1)[:, : (channels - keep) // groups]
        return (order + torch.arange(groups)[:, None] * per).flatten().tolist()
    return torch.argsort(score)[: channels - keep].tolist()


def _kept_width(channels: int, cfg: PruneConfig) -> int:
    keep = int(round(channels * (1.0 - cfg.ratio) / cfg.round_to)) * cfg.round_to
    return min(channels, max(cfg.round_to, keep))


def _ignored(net: UNet) -> list[torch.nn.Module]:
    """Layers whose output channels stay: the image output, the shared embedding, attention's q/k/v."""
    ignored = [net.conv_out, net.time_mlp]
    if net.label_emb is not None:
        ignored.append(net.label_emb)
    ignored += [m.qkv for m in net.modules() if isinstance(m, Attention)]
    return [sub for layer in ignored for sub in layer.modules()]


def rebuild(pruned: torch.nn.Module) -> UNet:
    """Read the widths off a pruned UNet into a UNetConfig and rebuild it cleanly (proves the config is exact)."""
    old: UNetConfig = pruned.config
    channels = tuple(blocks[0].res.conv2.out_channels for blocks in pruned.down)
    config = old.replace(channels=channels, widths={})
    defaults = {b.key: b for b in UNet(config).modules() if isinstance(b, Block)}
    widths = {}
    for block in (m for m in pruned.modules() if isinstance(m, Block)):
        for kind, width in _widths(block).items():
            if width != _widths(defaults[block.key])[kind]:
                widths[f"{block.key}.{kind}"] = width
    net = UNet(config.replace(widths=widths))
    state = {k: v.detach().clone() for k, v in pruned.state_dict().items()}
    mismatch = [k for k, v in net.state_dict().items() if k not in state or state[k].shape != v.shape]
    if mismatch:
        raise InputError(f"pruned widths cannot be expressed as a UNetConfig (first mismatch {mismatch[0]}): use a "
                         "uniform ratio and a round_to that divides every width")
    net.load_state_dict(state)
    return net.train(pruned.training)


def _widths(block: Block) -> dict[str, int]:
    widths = {"res": block.res.conv1.out_channels}
    if block.attn is not None:
        widths["attn"] = block.attn.qkv.out_channels // 3
    return widths


def _copy(net: UNet) -> UNet:
    twin = UNet(net.config)
    twin.load_state_dict(net.state_dict())
    return twin.train(net.training)


def _example(config: UNetConfig) -> tuple[torch.Tensor, ...]:
    x = torch.randn(1, config.in_channels, config.resolution, config.resolution)
    t = torch.zeros(1)
    label = torch.zeros(1, dtype=torch.long) if config.num_classes else None
    return (x, t, label) if label is not None else (x, t)


def _torch_pruning():
    try:
        import torch_pruning
    except ImportError:
        raise MissingDependencyError('torch-pruning is not installed; install it with: pip install "edgediff[prune]"')\
            from None
    return torch_pruning


def recover(model, out: Path, *, prune_config: PruneConfig = PruneConfig(), steps: int = 800, lr: float = 1e-3,
            distill_weight: float = 1.0, resume: bool = True, progress: bool = True, device: str = "cpu",
            **train_overrides) -> Path:
    """Prune a model directory and fine-tune the result with the unpruned model as teacher (output distillation +
    EDM loss); resumable from `out`. Writes a model directory with the pruned widths in its config."""

    teacher = checkpoint.load(model)
    if teacher.is_diffusers:
        raise InputError(f"prune expects an edgediff model directory; {model} is a diffusers UNet2DModel: distil it "
                         f"into one first (`edgediff distill --model {model} --out student`) and prune the student")
    cfg = train.TrainConfig(**{**teacher.meta.get("training", {}), "steps": max(1, steps), "lr": lr,
                               "warmup_steps": 100,
                               "checkpoint_every": max(1, min(100, steps)),
                               **{k: v for k, v in train_overrides.items() if v is not None}})
    out = Path(out)
    if resume and (out / "latest").is_file():
        student = UNet(checkpoint.load(out, weights=False).unet)  # the architecture; weights come from ckpt
    else:
        student = prune(teacher.net, prune_config, grads_fn=_taylor_grads(teacher, cfg)).train()
    before, after = flops_per_step(teacher.net, teacher.unet), flops_per_step(student, student.config)
    meta = {"name": out.name, "precond": teacher.precond.to_dict(), "data": cfg.data,
            "training": dataclasses.asdict(cfg), "sampler_defaults": teacher.sampler_defaults,
            "pruning": {**dataclasses.asdict(prune_config), "teacher": teacher.meta.get("name", str(model)),
                        "distill_weight": distill_weight, "params": [count_params(teacher.net), count_params(student)],
                        "flops_per_step": [before, after]}}
    if steps == 0:
        return checkpoint.save(out, student.eval(), {**meta, "training_state": {"step": 0}})
    data = datasets.load(cfg.data, resolution=teacher.unet.resolution, channels=teacher.unet.in_channels)
    loss = edm(teacher.precond, cfg, teacher=teacher.net.eval().requires_grad_(False),
                     distill_weight=distill_weight)
    return train.run(student, cfg, out, data=data, loss=loss, meta=meta, resume=resume, progress=progress,
                     device=device)


def _taylor_grads(teacher, cfg):
    """Gradients of the EDM loss on a few fixed training batches (Diff-Pruning's Taylor importance)."""

    def grads(net: UNet) -> None:
        data = datasets.load(cfg.data, resolution=net.config.resolution, channels=net.config.in_channels)
        gen, fp32 = torch.Generator().manual_seed(cfg.seed), dataclasses.replace(cfg, precision="fp32")
        for step in range(4):
            idx = torch.from_numpy(train.batch_indices(step, len(data.images), cfg.batch_size, cfg.seed))
            x0, label = torch.from_numpy(data.images)[idx], torch.from_numpy(data.labels)[idx]
            edm_loss(net, x0, label, teacher.precond, gen, fp32).backward()

    return grads
