"""Export-friendly stand-ins for the parts of diffusers' UNets that lower badly, numerically the same.

`F.scaled_dot_product_attention` exports as its "safe softmax" (any / eq / where / logical_not around the
softmax), `Timesteps` builds its frequencies with `arange` at run time, and GEGLU's `chunk` of one projection is a
pair of slices that XNNPACK leaves out of an int8 graph (its quantized slice needs the input's scale on the
output): none of it lowers into XNNPACK, so an SD-style UNet falls apart into islands. `MatmulAttention` is
attention as written in Vaswani et al. 2017 (matmul → softmax → matmul), `FrozenTimesteps` holds the frequencies
as a buffer, `SplitGEGLU` is the same projection as two linears, and integer output scale factors from a config
(a cast op each) become floats.
"""

from __future__ import annotations

import math

import torch


class MatmulAttention:
    """A diffusers attention processor: scaled dot-product attention as two matmuls and a softmax (no mask)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        if attention_mask is not None:
            raise NotImplementedError(f"{type(self).__name__} takes no attention mask")
        residual, hidden_states, context, shape = _prelude(attn, hidden_states, encoder_hidden_states, temb)
        out = self.attend(attn, hidden_states, context)
        out = attn.to_out[1](attn.to_out[0](out))
        if shape is not None:
            out = out.transpose(-1, -2).reshape(shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def attend(self, attn, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """[B, N, C] queries' source and [B, L, C'] context → attention output before to_out, [B, N, inner]."""
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        q, k, v = (_split_heads(y, heads) for y in (q, k, v))
        scores = torch.matmul(q * attn.scale, k.transpose(-1, -2))
        out = torch.matmul(scores.softmax(dim=-1), v)
        bsz, _, n, d = out.shape
        return out.transpose(1, 2).reshape(bsz, n, heads * d)


def _prelude(attn, hidden_states, encoder_hidden_states, temb):
    """diffusers' Attention before the projections: spatial/group norm, [B,C,H,W] → [B,HW,C], the context."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    shape = None
    if hidden_states.ndim == 4:
        shape = hidden_states.shape
        b, c, h, w = shape
        hidden_states = hidden_states.reshape(b, c, h * w).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    if encoder_hidden_states is not None and attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    return residual, hidden_states, context, shape


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, dim = x.shape
    return x.reshape(b, n, heads, dim // heads).transpose(1, 2)


class FrozenTimesteps(torch.nn.Module):
    """diffusers' `Timesteps` (sinusoidal embedding, Vaswani et al. 2017) with its frequencies as a buffer."""

    def __init__(self, proj):
        super().__init__()
        half = proj.num_channels // 2
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - proj.downscale_freq_shift)
        self.register_buffer("freqs", torch.exp(exponent), persistent=False)
        self.flip, self.scale, self.odd = proj.flip_sin_to_cos, float(getattr(proj, "scale", 1)), proj.num_channels % 2

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        emb = self.scale * (timesteps[:, None].float() * self.freqs[None, :])
        sin, cos = torch.sin(emb), torch.cos(emb)
        emb = torch.cat([cos, sin], dim=-1) if self.flip else torch.cat([sin, cos], dim=-1)
        return torch.nn.functional.pad(emb, (0, 1, 0, 0)) if self.odd else emb


class SplitGEGLU(torch.nn.Module):
    """diffusers' `GEGLU` (Shazeer 2020) with its one projection split in two: value and gate rows, no slicing."""

    def __init__(self, geglu):
        super().__init__()
        weight, bias = geglu.proj.weight.detach(), geglu.proj.bias
        half = weight.shape[0] // 2
        self.value = _linear(weight[:half], None if bias is None else bias.detach()[:half])
        self.gate = _linear(weight[half:], None if bias is None else bias.detach()[half:])

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.value(hidden_states) * torch.nn.functional.gelu(self.gate(hidden_states))


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def make_export_friendly(unet) -> None:
    """Swap a diffusers UNet's attention processors, timestep projections and GEGLUs for the stand-ins above, in
    place."""
    from diffusers.models.activations import GEGLU
    from diffusers.models.attention_processor import Attention
    from diffusers.models.embeddings import Timesteps

    for module in list(unet.modules()):
        for attr in ("output_scale_factor", "rescale_output_factor"):  # int 1 from a config: a cast in the graph
            if isinstance(getattr(module, attr, None), int):
                setattr(module, attr, float(getattr(module, attr)))
        if isinstance(module, Attention):
            module.set_processor(MatmulAttention())
        for name, child in list(module.named_children()):
            if isinstance(child, Timesteps):
                setattr(module, name, FrozenTimesteps(child))
            elif type(child) is GEGLU:
                setattr(module, name, SplitGEGLU(child))
