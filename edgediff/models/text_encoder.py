"""A tiny CLIP-style text encoder (Radford et al. 2021's text tower in miniature) for the project's own text model.

It reads the ids of the real CLIP BPE tokenizer (49,408 tokens), so prompts are tokenized exactly as for Stable
Diffusion, and maps them through a stored table to a compact vocabulary (the tokens of the training captions; id 0
= unknown), which keeps the embedding a few hundred KB instead of CLIP's 49,408 rows. Then token + position
embeddings, pre-LN causal transformer layers with explicit softmax attention, a final LayerNorm: hidden states
[B, L, width], what the UNet cross-attends to (as SD's UNet reads CLIP's last hidden state).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgediff.format.latent_configs import TextEncoderConfig


class SelfAttention(nn.Module):
    """Causal multi-head self-attention as explicit softmax(QKᵀ/√d + mask)V (no SDPA: fewer export fallbacks)."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.heads, self.dim = cfg.heads, cfg.width // cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        mask = torch.full((cfg.max_length, cfg.max_length), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dim) + self.mask[:n, :n], dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Layer(nn.Module):
    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(cfg.width), SelfAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, 4 * cfg.width), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * cfg.width, cfg.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyTextEncoder(nn.Module):
    """forward(ids int [B, max_length] of the CLIP tokenizer) → hidden states float [B, max_length, width]."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.config = cfg = config
        # CLIP id → compact id: an int32 column (stored exactly whatever dtype the float weights are saved in),
        # read by an embedding lookup, the one op every backend keeps
        self.register_buffer("token_map", torch.zeros(cfg.clip_vocab_size, 1, dtype=torch.int32))
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positions = nn.Parameter(torch.randn(cfg.max_length, cfg.width) * 0.01)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width)

    def set_vocabulary(self, clip_ids) -> None:
        """Compact id i + 1 for the i-th of `clip_ids` (the tokens the captions use), 0 for every other token."""
        ids = torch.as_tensor(list(clip_ids), dtype=torch.long)
        if len(ids) + 1 > self.config.vocab_size or len(set(ids.tolist())) != len(ids):
            raise ValueError(f"{len(ids)} distinct token ids do not fit vocab_size {self.config.vocab_size} "
                             "(one row is kept for unknown tokens)")
        with torch.no_grad():
            self.token_map.zero_()
            self.token_map[ids, 0] = torch.arange(1, len(ids) + 1, dtype=torch.int32)

    def compact(self, ids: torch.Tensor) -> torch.Tensor:
        """CLIP ids → compact ids (long), unknown tokens → 0. An integer gather: a float table would be taken for an
        embedding by weight compressors (OpenVINO/Core ML w8) and its ids rounded to other tokens."""
        return self.token_map[:, 0][ids.long()].long()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(self.compact(ids)) + self.positions[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)
