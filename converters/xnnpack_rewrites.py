"""Exact, numerically identical rewrites of ops XNNPACK would otherwise leave to ExecuTorch's portable kernels.

GroupNorm → 4-D mean/sub/mul/rsqrt, nearest 2× upsample → reshape/cat, no-op expand/squeeze → view, N-D linear →
2-D linear: applied as decompositions of the captured graph before lowering, so a UNet lands in one delegate.
"""

from __future__ import annotations


def xnnpack_friendly_decompositions() -> dict:
    """Core ATen decompositions plus exact rewrites of ops XNNPACK would otherwise leave to portable kernels.

    They also apply to int8 graphs: with the residual adds and skip concatenations left in float (KEEP_FLOAT_OPS)
    the GroupNorm and upsample rewrites' reshapes no longer sit between quantize nodes, which XNNPACK's NHWC pass
    would reject, so an int8 UNet is one delegate too."""
    import torch
    from torch._decomp import core_aten_decompositions

    aten = torch.ops.aten
    table = core_aten_decompositions()
    table[aten.native_group_norm.default] = _group_norm
    table[aten.upsample_nearest2d.vec] = _upsample_nearest
    table[aten.expand.default] = _expand
    table[aten.squeeze.dims] = _squeeze_dims
    table[aten.unsqueeze.default] = _unsqueeze
    table[aten.linear.default] = _linear
    return table


def _linear(x, weight, bias=None):
    """Linear on [..., K] as a 2-D linear between reshapes (a batched-matmul form trips XNNPACK's linear pass)."""
    import torch

    if x.dim() <= 2:
        return NotImplemented
    out = torch.ops.aten.linear.default(x.reshape(-1, x.shape[-1]), weight, bias)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _group_norm(x, weight, bias, n, c, hxw, groups, eps):
    """native_group_norm on [B,C,...] as models.unet.decomposed_group_norm (XNNPACK-delegable ops only)."""
    from edgediff.models.unet import decomposed_group_norm

    y, mean, rstd = decomposed_group_norm(x, groups, eps, weight, bias)
    return y, mean.reshape(x.shape[0], groups), rstd.reshape(x.shape[0], groups)


def _upsample_nearest(x, output_size=None, scale_factors=None):
    """Nearest 2× upsampling as reshape + cat (distinct operands: XNNPACK's cat wants ≥ 2 input nodes)."""
    import torch

    if x.dim() != 4:
        return NotImplemented
    b, c, h, w = x.shape
    size = output_size or [int(h * scale_factors[0]), int(w * scale_factors[1])]
    if list(size) != [2 * h, 2 * w]:
        return NotImplemented  # keep the original op
    u = torch.cat([x.reshape(b, c * h, w, 1), x.reshape(b, c * h, w, 1)], dim=3)
    v = torch.cat([u.reshape(b, c * h, 1, 2 * w), u.reshape(b, c * h, 1, 2 * w)], dim=2)
    return v.reshape(b, c, 2 * h, 2 * w)


def _expand(x, size, implicit=False):
    import torch

    if list(x.shape) != list(size):
        return NotImplemented
    return torch.ops.aten.view.default(x, list(size))


def _squeeze_dims(x, dims):
    import torch

    drop = {d % max(x.dim(), 1) for d in dims}
    return torch.ops.aten.view.default(x, [s for i, s in enumerate(x.shape) if not (i in drop and s == 1)])


def _unsqueeze(x, dim):
    import torch

    shape = list(x.shape)
    shape.insert(dim % (x.dim() + 1), 1)
    return torch.ops.aten.view.default(x, shape)
