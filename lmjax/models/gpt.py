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
from lmjax.models.attention import LayerCache, MultiHeadAttention, key_padding_mask
from lmjax.models.layers import (Embed, Mlp, RopeScaling, constrain, mup_attention_scale,
                                 mup_readout, norm_layer)
from lmjax.models.platform import compute_dtype_name
from lmjax.models.scan import apply_layers, cache_index, stacked_cache
from lmjax.models.unembed import Unembed, Unembedded


def compute_dtype(config: ModelConfig) -> jnp.dtype:
    return jnp.dtype(compute_dtype_name(config.dtype))


def init_cache(config: ModelConfig, batch: int, length: int) -> tuple[LayerCache, ...] | LayerCache:
    """An empty key/value cache of `length` slots per layer, for `GPT(...)(ids, cache=...)`:
    one LayerCache per layer, or with `model.scan_layers` one with a leading layers dimension."""
    caches = tuple(
        LayerCache.empty(batch, length, config.kv_heads, config.d_head, compute_dtype(config))
        for _ in range(config.n_layers)
    )
    return stacked_cache(caches) if config.scan_layers else caches


def rope_scaling(config: ModelConfig) -> RopeScaling | None:
    """`model.rope_scaling` and its parameters, or None for plain RoPE."""
    if config.rope_scaling == "none":
        return None
    return RopeScaling(config.rope_scaling, config.rope_scaling_factor, config.rope_low_freq_factor,
                       config.rope_high_freq_factor, config.rope_original_max_len)


def token_positions(
    ids_BT: jax.Array, start: jax.Array | int, attention_mask: jax.Array | None
) -> jax.Array:
    """Positions of the ids, which sit at slots start..start+T-1. With a mask over all slots
    (1 = real token), padding is skipped: a token's position counts the real tokens before it
    (transformers' cumsum(mask) - 1, here clipped at 0 on leading padding)."""
    batch, length = ids_BT.shape
    if attention_mask is None:
        return jnp.broadcast_to(start + jnp.arange(length), (batch, length))
    positions_BS = jnp.maximum(jnp.cumsum(jnp.asarray(attention_mask, jnp.int32), axis=1) - 1, 0)
    return jax.lax.dynamic_slice_in_dim(positions_BS, start, length, axis=1)


def segment_positions(segment_ids_BT: jax.Array) -> jax.Array:
    """Positions that restart at 0 wherever the segment id changes along a packed row, so
    each packed example sees the positions it would have alone."""
    index_BT = jnp.broadcast_to(jnp.arange(segment_ids_BT.shape[1]), segment_ids_BT.shape)
    starts_BT = jnp.concatenate(
        [jnp.ones_like(segment_ids_BT[:, :1], bool), segment_ids_BT[:, 1:] != segment_ids_BT[:, :-1]],
        axis=1,
    )
    return index_BT - jax.lax.cummax(jnp.where(starts_BT, index_BT, 0), axis=1)


def segment_mask(segment_ids_BT: jax.Array) -> jax.Array:
    """B×T×T: a query attends only to keys of its own packed example."""
    return segment_ids_BT[:, :, None] == segment_ids_BT[:, None, :]


class DecoderBlock(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x))."""

    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        x_BTD: jax.Array,
        positions_BT: jax.Array,
        keys_B1S: jax.Array | None,
        cache: LayerCache | None = None,
    ) -> tuple[jax.Array, LayerCache | None]:
        """The block's output and, when decoding, its cache with this call's keys appended."""
        cfg = self.config
        dtype = compute_dtype(cfg)
        residual_std = 0.02 / math.sqrt(2 * cfg.n_layers)

        def norm(name: str) -> nn.Module:
            return norm_layer(cfg.norm, cfg.norm_eps, cfg.use_bias, dtype, name=name)

        attention = MultiHeadAttention(
            d_model=cfg.d_model,
            n_heads=cfg.n_heads,
            n_kv_heads=cfg.kv_heads,
            head_dim=cfg.d_head,
            use_bias=cfg.use_bias,
            dtype=dtype,
            out_init_std=residual_std,
            rope_theta=cfg.rope_theta if cfg.position == "rope" else None,
            rope_scaling=rope_scaling(cfg),
            qkv_bias=cfg.use_bias or cfg.qkv_bias,
            causal_blocks=cfg.attention_blocks,
            attention_impl=cfg.attention_impl,
            scale=mup_attention_scale(cfg, None),
            name="attn",
        )
        attended = attention(norm("ln_1")(x_BTD), causal=True, mask=keys_B1S,
                             positions_BT=positions_BT, cache=cache)
        attn_BTD, cache = attended if cache is not None else (attended, None)
        x_BTD = constrain(x_BTD + attn_BTD, ("batch", "length", "embed"))
        mlp = Mlp(cfg.d_ff, cfg.mlp, cfg.use_bias, dtype, out_init_std=residual_std, name="mlp")
        x_BTD = x_BTD + mlp(norm("ln_2")(x_BTD))
        return constrain(x_BTD, ("batch", "length", "embed")), cache


class GPT(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        positions: jax.Array | None = None,
        cache: tuple[LayerCache, ...] | LayerCache | None = None,
        attention_mask: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        output_hidden: bool = False,
    ) -> jax.Array | Unembedded | tuple[jax.Array, tuple[LayerCache, ...] | LayerCache]:
        """Logits B×T×V (float32) for token ids B×T; `positions` default to 0..T-1.

        Decoding passes a `cache` (from `init_cache`) and gets (logits, updated cache) back:
        the ids are the tokens after those already cached, and positions default to their slots.
        `attention_mask` (1 = real token, 0 = padding; B×T, or B×S over all cache slots when
        decoding) hides padded keys and makes default positions skip padding, so a left- or
        right-padded row scores as it would alone, as in transformers' GPT-2.
        `segment_ids` (B×T, training only) marks packed examples: a token attends only within
        its segment and default positions restart per segment, so each example scores as alone.
        `output_hidden` returns the logits unmultiplied, as `Unembedded` (final hidden states
        and output weights), for a loss that forms them a vocabulary chunk at a time.
        """
        cfg = self.config
        dtype = compute_dtype(cfg)
        ids_BT = constrain(jnp.asarray(input_ids), ("batch", "length"))
        start = 0 if cache is None else cache_index(cache)
        if positions is not None:
            positions_BT = jnp.asarray(positions)
        elif segment_ids is not None:
            positions_BT = segment_positions(jnp.asarray(segment_ids))
        else:
            positions_BT = token_positions(ids_BT, start, attention_mask)
        wte = Embed(cfg.vocab_size, cfg.d_model, dtype, name="wte")
        x_BTD = wte(ids_BT)
        if cfg.position == "learned":
            x_BTD = x_BTD + Embed(cfg.max_len, cfg.d_model, dtype, init_std=0.01,
                                  axes=("length", "embed"), name="wpe")(positions_BT)
        x_BTD = constrain(x_BTD, ("batch", "length", "embed"))
        keys_B1S = None if attention_mask is None else key_padding_mask(attention_mask)
        if segment_ids is not None:
            same_BTT = segment_mask(jnp.asarray(segment_ids))
            keys_B1S = same_BTT if keys_B1S is None else keys_B1S & same_BTT
        x_BTD, new_cache = apply_layers(DecoderBlock, cfg, cfg.n_layers, "h", x_BTD,
                                        (positions_BT, keys_B1S), cache)
        x_BTD = norm_layer(cfg.norm, cfg.norm_eps, cfg.use_bias, dtype, name="ln_f")(x_BTD)
        x_BTD = mup_readout(cfg, x_BTD)
        head = (None if cfg.tie_embeddings
                else Unembed(cfg.d_model, cfg.vocab_size, dtype, name="lm_head"))
        if output_hidden and cache is None:
            weights_DV = wte.embedding.astype(dtype).T if head is None else head.weights_DV()
            return Unembedded(x_BTD, weights_DV)
        logits_BTV = wte.attend(x_BTD) if head is None else head(x_BTD)
        logits_BTV = constrain(logits_BTV.astype(jnp.float32), ("batch", "length", "vocab"))
        return logits_BTV if cache is None else (logits_BTV, new_cache)
