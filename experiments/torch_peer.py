"""A nanoGPT-style GPT in PyTorch (github.com/karpathy/nanoGPT, model.py): the peer that
experiments/gpu_bench.py times against lmjax at the same shape. Pre-LayerNorm blocks, fused
QKV projection, `F.scaled_dot_product_attention(is_causal=True)` (flash attention on CUDA),
tanh-GELU MLP, learned positions, output tied to the token embedding; returns the mean
cross-entropy, as nanoGPT's forward does when given targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, eps: float):
        super().__init__()
        self.n_heads = n_heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d_model, eps=eps), nn.LayerNorm(d_model, eps=eps)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.fc, self.out = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.out(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class PeerGPT(nn.Module):
    def __init__(self, vocab: int, max_len: int, d_model: int, n_layers: int, n_heads: int,
                 d_ff: int, eps: float):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d_model), nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, eps) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model, eps=eps)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.wte(ids) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def make_peer(config) -> PeerGPT:
    """The peer at an lmjax ModelConfig's shape (GPT-2/GPT-3 style: MHA, head size d/H)."""
    torch.manual_seed(0)
    return PeerGPT(config.vocab_size, config.max_len, config.d_model, config.n_layers,
                   config.n_heads, config.d_ff, config.norm_eps)
