"""Apple's attention implementations for the Neural Engine (Apple 2022, "Deploying Transformers on the Apple Neural
Engine"; the names of apple/ml-stable-diffusion): ORIGINAL is attention as written, SPLIT_EINSUM keeps the
(B, C, 1, S) layout the Neural Engine prefers — 1×1 convolutions for the projections and one pair of einsums per
head, so no tensor is ever reshaped to split heads — and SPLIT_EINSUM_V2 also splits the queries into blocks of
512 tokens so no attention matrix is larger than 512 × S (what lets the 64×64-latent self-attention of an SD UNet
fit). All three are numerically the same attention; they differ only in the ops Core ML schedules.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from edgediff.errors import InputError
from edgediff.models.export_friendly import MatmulAttention

IMPLEMENTATIONS = ("original", "split_einsum", "split_einsum_v2")
QUERY_CHUNK = 512  # SPLIT_EINSUM_V2's query block (apple/ml-stable-diffusion's CHUNK_SIZE)


class SplitEinsumAttention(MatmulAttention):
    """A diffusers attention processor computing in the Neural Engine's (B, C, 1, S) layout, head by head;
    `chunk` > 0 splits the queries into blocks of that many tokens (SPLIT_EINSUM_V2)."""

    def __init__(self, chunk: int = 0):
        self.chunk = chunk

    def attend(self, attn, hidden_states: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = _conv1x1(attn.to_q, _ane(hidden_states))  # [B, inner, 1, N]
        k = _conv1x1(attn.to_k, _ane(context)).transpose(1, 3)  # [B, L, 1, inner]
        v = _conv1x1(attn.to_v, _ane(context))  # [B, inner, 1, L]
        d = q.shape[1] // attn.heads
        n = q.shape[3]
        step = self.chunk if 0 < self.chunk < n else n
        heads = []
        for h in range(attn.heads):
            qh, kh, vh = q[:, h * d:(h + 1) * d], k[..., h * d:(h + 1) * d], v[:, h * d:(h + 1) * d]
            blocks = []
            for start in range(0, n, step):
                w = torch.einsum("bchq,bkhc->bkhq", qh[..., start:start + step], kh) * attn.scale  # [B, L, 1, q]
                blocks.append(torch.einsum("bkhq,bchk->bchq", w.softmax(dim=1), vh))  # [B, d, 1, q]
            heads.append(torch.cat(blocks, dim=3) if len(blocks) > 1 else blocks[0])
        return torch.cat(heads, dim=1).squeeze(2).transpose(1, 2)  # [B, N, inner] for to_out


def _ane(x: torch.Tensor) -> torch.Tensor:
    """[B, S, C] → [B, C, 1, S]."""
    return x.transpose(1, 2).unsqueeze(2)


class Conv1x1(torch.nn.Module):
    """A Linear's weights as the 1×1 convolution they are on a [B, C, 1, S] tensor: the same parameters (a view,
    not a copy) under the same names, so a converted program's weights keep the names they came from."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.weight = torch.nn.Parameter(linear.weight.detach().view(*linear.weight.shape, 1, 1),
                                         requires_grad=False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


def _conv1x1(layer, x: torch.Tensor) -> torch.Tensor:
    """`layer` (a Linear, or the Conv1x1 that stands in for it inside `attention_implementation`) on [B, C, 1, S]."""
    return layer(x) if isinstance(layer, Conv1x1) else F.conv2d(x, layer.weight[:, :, None, None], layer.bias)


def processor(implementation: str):
    """The diffusers attention processor for one of IMPLEMENTATIONS."""
    if implementation not in IMPLEMENTATIONS:
        raise InputError(f"unknown attention implementation {implementation!r}; expected one of "
                         f"{', '.join(IMPLEMENTATIONS)}")
    return {"original": MatmulAttention, "split_einsum": SplitEinsumAttention,
            "split_einsum_v2": lambda: SplitEinsumAttention(QUERY_CHUNK)}[implementation]()


@contextmanager
def attention_implementation(net, implementation: str):
    """Run every diffusers `Attention` inside `net` with `implementation` for the duration, then restore the
    processors it had. A network without diffusers attention takes only "original" (edgediff's own UNet already
    computes attention in the channels-first 1×1-convolution layout)."""
    chosen = processor(implementation)
    modules = [m for m in net.modules() if hasattr(m, "set_processor") and hasattr(m, "to_q")]
    if implementation != "original" and not modules:
        raise InputError(f"attention={implementation} applies to diffusers UNets' Attention blocks; this network "
                         f"has none (edgediff's own UNet computes attention channels-first already); expected "
                         f"attention=original")
    saved = [(m.processor, m.to_q, m.to_k, m.to_v) for m in modules]
    try:
        for m in modules:
            m.set_processor(chosen)
            if isinstance(chosen, SplitEinsumAttention):
                m.to_q, m.to_k, m.to_v = Conv1x1(m.to_q), Conv1x1(m.to_k), Conv1x1(m.to_v)
        yield
    finally:
        for m, (p, q, k, v) in zip(modules, saved, strict=True):
            m.set_processor(p)
            m.to_q, m.to_k, m.to_v = q, k, v
