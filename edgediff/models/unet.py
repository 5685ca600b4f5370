"""Compact class-conditional UNet for phones and laptops (ADM layout, Dhariwal & Nichol 2021, shrunk).

The network is F in EDM's D(x, σ) = c_skip x + c_out F(c_in x, c_noise, label): it never sees σ directly,
only `t = c_noise(σ)`, so exported graphs hold no diffusion maths. NPU-friendly choices are config fields.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgediff.format.configs import UNetConfig


class GroupNorm(nn.GroupNorm):
    """GroupNorm whose `decomposed` form uses only mean/sub/mul/rsqrt on 4-D tensors (XNNPACK-delegable).

    Both forms share one state_dict, so a model trained with one exports with the other.
    """

    def __init__(self, groups: int, channels: int, *, decomposed: bool = False):
        super().__init__(math.gcd(groups, channels), channels, eps=1e-5)
        self.decomposed = decomposed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.decomposed:
            return super().forward(x)
        return decomposed_group_norm(x, self.num_groups, self.eps, self.weight, self.bias)[0]


def decomposed_group_norm(x: torch.Tensor, groups: int, eps: float, weight=None, bias=None):
    """GroupNorm on [B,C,...] from 4-D mean.dim(2,3) / sub / mul / rsqrt only (XNNPACK-delegable): the normalised
    tensor and the per-group mean and rstd [B, groups, 1, 1]. ExecuTorch's graph rewrite uses it too."""
    shape, c = x.shape, x.shape[1]
    y = x.reshape(shape[0], groups, c // groups, -1)
    mean = y.mean(dim=(2, 3), keepdim=True)
    d = y - mean
    rstd = ((d * d).mean(dim=(2, 3), keepdim=True) + eps).rsqrt()
    y = (d * rstd).reshape(shape)
    per_channel = [1, c] + [1] * (len(shape) - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y, mean, rstd


class ResBlock(nn.Module):
    """Two 3×3 convolutions with a time/class embedding added in between, and a residual path."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig, *, mid: int | None = None):
        super().__init__()
        mid = mid or cout
        dec = cfg.norm == "group_decomposed"
        self.norm1 = GroupNorm(cfg.groups, cin, decomposed=dec)
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1)
        self.emb = nn.Linear(cfg.time_embed_dim, mid)
        self.norm2 = GroupNorm(cfg.groups, mid, decomposed=dec)
        self.dropout = nn.Dropout(cfg.dropout)
        self.conv2 = nn.Conv2d(mid, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Self-attention over pixels as explicit softmax(QKᵀ/√d)V (lowers with fewer fallbacks than SDPA)."""

    def __init__(self, channels: int, cfg: UNetConfig, *, inner: int | None = None):
        super().__init__()
        inner = inner or channels
        self.heads = math.gcd(cfg.attention_heads, inner)
        self.scale = 1.0 / math.sqrt(inner // self.heads)
        self.norm = GroupNorm(cfg.groups, channels, decomposed=cfg.norm == "group_decomposed")
        self.qkv = nn.Conv2d(channels, 3 * inner, 1)
        self.proj = nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b * self.heads, 3, -1, h * w).unbind(1)
        attn = torch.softmax((q.transpose(1, 2) @ k) * self.scale, dim=-1)  # [bh, hw, hw]
        out = (v @ attn.transpose(1, 2)).reshape(b, -1, h, w)
        return x + self.proj(out)


class CrossAttention(nn.Module):
    """Attention from pixels to text tokens (latent diffusion's conditioning, Rombach et al. 2022): queries from the
    feature map, keys and values from the text encoder's hidden states; explicit softmax, as `Attention`."""

    def __init__(self, channels: int, cfg: UNetConfig):
        super().__init__()
        self.heads = math.gcd(cfg.attention_heads, channels)
        self.scale = 1.0 / math.sqrt(channels // self.heads)
        self.norm = GroupNorm(cfg.groups, channels, decomposed=cfg.norm == "group_decomposed")
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(cfg.context_dim, 2 * channels)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(self.norm(x)).reshape(b * self.heads, c // self.heads, h * w)  # [bh, d, hw]
        k, v = self.kv(context).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).reshape(
            2, b * self.heads, -1, c // self.heads).unbind(0)  # [bh, L, d] each
        attn = torch.softmax((q.transpose(1, 2) @ k.transpose(1, 2)) * self.scale, dim=-1)  # [bh, hw, L]
        out = (attn @ v).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj(out)


class Upsample(nn.Module):
    def __init__(self, channels: int, mode: str):
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)


class Block(nn.Module):
    """A ResBlock optionally followed by attention: the unit the UNet's levels are made of."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig, *, attention: bool, name: str):
        super().__init__()
        self.key = name  # the prefix of this block's entries in UNetConfig.widths
        self.res = ResBlock(cin, cout, cfg, mid=cfg.widths.get(f"{name}.res"))
        self.attn = Attention(cout, cfg, inner=cfg.widths.get(f"{name}.attn")) if attention else None
        self.cross = CrossAttention(cout, cfg) if attention and cfg.context_dim else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.res(x, emb)
        x = self.attn(x) if self.attn is not None else x
        return self.cross(x, context) if self.cross is not None else x


class UNet(nn.Module):
    """forward(x [B,C,H,W], t [B] = c_noise(σ), label [B] int or None) -> F(x, t, label) [B,C,H,W]; for a text
    model (config.context_dim > 0) `label` is the text encoder's output [B, L, context_dim] instead."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        ch, temb = cfg.channels, cfg.time_embed_dim
        half = temb // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half) / half), persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(temb, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.label_emb = nn.Embedding(cfg.num_classes + 1, temb) if cfg.num_classes else None
        self.context_dim = cfg.context_dim
        self.w_mlp = None
        if cfg.guidance_embed:  # zero-initialised output: a fresh student starts as its teacher
            self.w_mlp = nn.Sequential(nn.Linear(temb, temb), nn.SiLU(), nn.Linear(temb, temb))
            nn.init.zeros_(self.w_mlp[2].weight)
            nn.init.zeros_(self.w_mlp[2].bias)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.down, self.downsample, skips, c = nn.ModuleList(), nn.ModuleList(), [ch[0]], ch[0]
        for lvl, cout in enumerate(ch):
            blocks = nn.ModuleList()
            for i in range(cfg.blocks_per_level):
                attn = lvl in cfg.attention_levels
                blocks.append(Block(c, cout, cfg, attention=attn, name=f"down.{lvl}.{i}"))
                c = cout
                skips.append(c)
            self.down.append(blocks)
            last = lvl == len(ch) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))
            if not last:
                skips.append(c)
        self.mid = nn.ModuleList([Block(c, c, cfg, attention=True, name="mid.0"),
                                  Block(c, c, cfg, attention=False, name="mid.1")])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for lvl in reversed(range(len(ch))):
            blocks = nn.ModuleList()
            for i in range(cfg.blocks_per_level + 1):
                attn = lvl in cfg.attention_levels
                blocks.append(Block(c + skips.pop(), ch[lvl], cfg, attention=attn, name=f"up.{lvl}.{i}"))
                c = ch[lvl]
            self.up.append(blocks)
            self.upsample.append(Upsample(c, cfg.upsample) if lvl else nn.Identity())
        self.norm_out = GroupNorm(cfg.groups, c, decomposed=cfg.norm == "group_decomposed")
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _sinusoid(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=1)

    def embed(self, t: torch.Tensor, label: torch.Tensor | None, w: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(self._sinusoid(t))
        if self.label_emb is not None:
            if label is None:
                label = torch.full_like(t, self.config.null_label, dtype=torch.long)
            emb = emb + self.label_emb(label.long())
        if self.w_mlp is not None:
            w = torch.ones_like(t) if w is None else w
            emb = emb + self.w_mlp(self._sinusoid(w.float() - 1.0))
        return F.silu(emb)

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor | None = None,
                w: torch.Tensor | None = None) -> torch.Tensor:
        """F(x, t, label[, w]); `w` (the guidance scale, default 1) only for `config.guidance_embed` models."""
        context = None
        if self.context_dim:
            if label is None or label.dim() != 3 or label.shape[-1] != self.context_dim:
                raise ValueError(f"a text UNet takes context [B, L, {self.context_dim}] in the label slot, got "
                                 f"{None if label is None else tuple(label.shape)}")
            context, label = label.float(), None
        emb = self.embed(t, label, w)
        h = self.conv_in(x)
        hs = [h]
        for blocks, down in zip(self.down, self.downsample, strict=True):
            for block in blocks:
                h = block(h, emb, context)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        for block in self.mid:
            h = block(h, emb, context)
        for blocks, up in zip(self.up, self.upsample, strict=True):
            for block in blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), emb, context)
            h = up(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def flops_per_step(net: nn.Module, config: UNetConfig, *, batch: int = 1) -> int:
    """FLOPs (2 × multiply-accumulates) of one network call, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(batch, config.in_channels, config.resolution, config.resolution)
    t = torch.zeros(batch)
    label = torch.zeros(batch, dtype=torch.long) if config.num_classes else None
    if getattr(config, "context_dim", 0):  # a diffusers UNet's config has none
        label = torch.zeros(batch, 8, config.context_dim)  # a representative prompt length
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x, t, label)
    return int(counter.get_total_flops())
