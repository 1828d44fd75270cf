"""Decoder-only transformer: GPT-2/GPT-3 by default, the Llama variant by config.

GPT-2 shape: pre-LayerNorm blocks, GELU MLP, learned absolute positions, output tied to the
token embedding. Llama shape (`norm=rmsnorm, position=rope, mlp=swiglu, use_bias=false`,
optionally `n_kv_heads` < `n_heads`): the same blocks with those parts swapped.
The model only maps token ids to logits; losses live in `lmjax.objectives`.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmjax.config import ModelConfig
from lmjax.models.layers import (
    Dense,
    Embed,
    LayerCache,
    Mlp,
    MultiHeadAttention,
    Norm,
    constrain,
    normal,
)

REMAT_POLICIES = {
    "full": None,
    "dots_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def compute_dtype(config: ModelConfig) -> jnp.dtype:
    return jnp.dtype(config.dtype)


def init_cache(config: ModelConfig, batch: int, length: int) -> tuple[LayerCache, ...]:
    """An empty key/value cache of `length` slots per layer, for `GPT(...)(ids, cache=...)`."""
    return tuple(
        LayerCache.empty(batch, length, config.kv_heads, config.d_head, compute_dtype(config))
        for _ in range(config.n_layers)
    )


class DecoderBlock(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x))."""

    config: ModelConfig

    @nn.compact
    def __call__(
        self, x_BTD: jax.Array, positions_BT: jax.Array, cache: LayerCache | None = None
    ) -> jax.Array | tuple[jax.Array, LayerCache]:
        cfg = self.config
        dtype = compute_dtype(cfg)
        residual_std = 0.02 / math.sqrt(2 * cfg.n_layers)

        def norm(name: str) -> Norm:
            return Norm(cfg.norm, cfg.norm_eps, cfg.use_bias, dtype, name=name)

        attention = MultiHeadAttention(
            n_heads=cfg.n_heads,
            n_kv_heads=cfg.kv_heads,
            head_dim=cfg.d_head,
            use_bias=cfg.use_bias,
            dtype=dtype,
            out_init_std=residual_std,
            rope_theta=cfg.rope_theta if cfg.position == "rope" else None,
            causal_blocks=cfg.attention_blocks,
            name="attn",
        )
        attended = attention(norm("ln_1")(x_BTD), causal=True, positions_BT=positions_BT, cache=cache)
        attn_BTD, cache = attended if cache is not None else (attended, None)
        x_BTD = constrain(x_BTD + attn_BTD, ("batch", "length", "embed"))
        mlp = Mlp(cfg.d_ff, cfg.mlp, cfg.use_bias, dtype, out_init_std=residual_std, name="mlp")
        x_BTD = x_BTD + mlp(norm("ln_2")(x_BTD))
        x_BTD = constrain(x_BTD, ("batch", "length", "embed"))
        return x_BTD if cache is None else (x_BTD, cache)


class GPT(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        positions: jax.Array | None = None,
        cache: tuple[LayerCache, ...] | None = None,
    ) -> jax.Array | tuple[jax.Array, tuple[LayerCache, ...]]:
        """Logits B×T×V (float32) for token ids B×T; `positions` default to 0..T-1.

        Decoding passes a `cache` (from `init_cache`) and gets (logits, updated cache) back:
        the ids are the tokens after those already cached, and positions default to their slots.
        """
        cfg = self.config
        dtype = compute_dtype(cfg)
        ids_BT = constrain(jnp.asarray(input_ids), ("batch", "length"))
        start = 0 if cache is None else cache[0].index
        positions_BT = (
            jnp.broadcast_to(start + jnp.arange(ids_BT.shape[1]), ids_BT.shape)
            if positions is None else jnp.asarray(positions)
        )
        wte = Embed(cfg.vocab_size, cfg.d_model, dtype, name="wte")
        x_BTD = wte(ids_BT)
        if cfg.position == "learned":
            x_BTD = x_BTD + Embed(cfg.max_len, cfg.d_model, dtype, init_std=0.01,
                                  axes=("length", "embed"), name="wpe")(positions_BT)
        x_BTD = constrain(x_BTD, ("batch", "length", "embed"))
        block = DecoderBlock
        if cfg.remat != "none":
            block = nn.remat(DecoderBlock, policy=REMAT_POLICIES[cfg.remat])
        new_cache = []
        for layer in range(cfg.n_layers):
            if cache is None:
                x_BTD = block(cfg, name=f"h_{layer}")(x_BTD, positions_BT)
            else:
                x_BTD, layer_cache = block(cfg, name=f"h_{layer}")(x_BTD, positions_BT, cache[layer])
                new_cache.append(layer_cache)
        x_BTD = Norm(cfg.norm, cfg.norm_eps, cfg.use_bias, dtype, name="ln_f")(x_BTD)
        if cfg.tie_embeddings:
            logits_BTV = wte.attend(x_BTD)
        else:
            logits_BTV = Dense((cfg.vocab_size,), ("embed", "vocab"), use_bias=False, dtype=dtype,
                               kernel_init=normal(0.02), name="lm_head")(x_BTD)
        logits_BTV = constrain(logits_BTV.astype(jnp.float32), ("batch", "length", "vocab"))
        return logits_BTV if cache is None else (logits_BTV, tuple(new_cache))
