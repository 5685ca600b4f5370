"""Exact, numerically identical rewrites of ops XNNPACK would otherwise leave to ExecuTorch's portable kernels.

GroupNorm and LayerNorm → 4-D mean/sub/mul/rsqrt, split/chunk → slices, nearest 2× upsample → reshape/cat,
no-op expand/squeeze → view, N-D linear → 2-D linear: applied as decompositions of the captured graph before
lowering, so a UNet lands in one delegate.
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
    table[aten.native_layer_norm.default] = _layer_norm
    table[aten.split_with_sizes.default] = _split_with_sizes
    table[aten.split.Tensor] = _split
    return table


def _layer_norm(x, normalized_shape, weight, bias, eps):
    """native_layer_norm over the last dim as 4-D mean.dim(2, 3) / sub / mul / rsqrt ([..., D] → [M, 1, 1, D]):
    the text encoder's and the transformer blocks' LayerNorms stay in the delegate."""
    if len(normalized_shape) != 1 or x.dim() < 2:
        return NotImplemented
    d = x.shape[-1]
    y = x.reshape(-1, 1, 1, d)
    mean = y.mean(dim=(2, 3), keepdim=True)
    centered = y - mean
    rstd = ((centered * centered).mean(dim=(2, 3), keepdim=True) + eps).rsqrt()
    out = (centered * rstd).reshape(x.shape)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    stats = (*x.shape[:-1], 1)
    return out, mean.reshape(stats), rstd.reshape(stats)


def _split_with_sizes(x, split_sizes, dim=0):
    """split (GEGLU's chunk(2)) as unit-stride slices, which XNNPACK copies; the split op itself it does not."""
    import torch

    out, start = [], 0
    for size in split_sizes:
        out.append(torch.ops.aten.slice.Tensor(x, dim, start, start + size))
        start += size
    return out


def _split(x, split_size, dim=0):
    n = x.shape[dim]
    if not isinstance(split_size, int):
        return NotImplemented
    return _split_with_sizes(x, [min(split_size, n - i) for i in range(0, n, split_size)], dim)


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
