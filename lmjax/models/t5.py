"""Encoder-decoder transformer for span corruption (Raffel et al. 2019).

Where T5 differs from the GPT: no absolute positions but a learned bias per head and
bucketed relative offset, computed once per stack and shared by its layers (bidirectional
buckets in the encoder, past-only in the decoder); RMS-style norm without mean or bias
(eps 1e-6); no biases anywhere; no 1/sqrt(d_head) in attention (T5 folds it into the
initialisation); decoder blocks with cross-attention to the encoder output; ReLU MLP
(v1.0) or gated GELU (v1.1, `mlp=geglu`). A tied output layer sees the decoder output
scaled by d_model**-0.5 (v1.0); v1.1 unties it (`tie_embeddings=false`) and does not scale.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmjax.config import ModelConfig
from lmjax.errors import ConfigError
from lmjax.models.gpt import compute_dtype
from lmjax.models.attention import CrossKV, LayerCache, MultiHeadAttention, key_padding_mask
from lmjax.models.layers import (
    Dense, Embed, Mlp, RelativePositionBias, constrain, mup_attention_scale, mup_readout,
    norm_layer, normal,
)
from lmjax.models.scan import apply_layers, cache_index, stacked_cache

# A decoder layer's decoding cache: its self-attention keys and values, and the projected
# encoder keys and values of its cross-attention (None until the first step computes them).
DecoderLayerCache = tuple[LayerCache, CrossKV | None]


def init_cache(config: ModelConfig, batch: int, length: int) -> Any:
    """An empty decoder cache of `length` self-attention slots per layer, for
    `T5.decode(..., cache=...)`: per layer (LayerCache, None), or with `model.scan_layers`
    one such pair with a leading layers dimension. The first step fills in the cross K/V."""
    dtype = compute_dtype(config)
    caches = tuple(
        LayerCache.empty(batch, length, config.kv_heads, config.d_head, dtype)
        for _ in range(config.decoder_layers)
    )
    if config.scan_layers:
        return stacked_cache(caches), None
    return tuple((layer_cache, None) for layer_cache in caches)


def _attention(cfg: ModelConfig, name: str) -> MultiHeadAttention:
    return MultiHeadAttention(
        d_model=cfg.d_model, n_heads=cfg.n_heads, n_kv_heads=cfg.kv_heads, head_dim=cfg.d_head,
        use_bias=cfg.use_bias, dtype=compute_dtype(cfg), scale=mup_attention_scale(cfg, 1.0),
        attention_impl=cfg.attention_impl, name=name,
    )


def _norm(cfg: ModelConfig, name: str) -> Norm:
    return norm_layer(cfg.norm, cfg.norm_eps, cfg.use_bias, compute_dtype(cfg), name=name)


def _mlp(cfg: ModelConfig) -> Mlp:
    return Mlp(cfg.d_ff, cfg.mlp, cfg.use_bias, compute_dtype(cfg), name="mlp")


class EncoderBlock(nn.Module):
    """x + attn(norm(x)) with the shared relative bias, then x + mlp(norm(x))."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array, mask_BTS: jax.Array | None, bias_HTS: jax.Array):
        cfg = self.config
        attended_BTD = _attention(cfg, "attn")(_norm(cfg, "attn_norm")(x_BTD), mask=mask_BTS,
                                               bias_HTS=bias_HTS)
        x_BTD = constrain(x_BTD + attended_BTD, ("batch", "length", "embed"))
        x_BTD = x_BTD + _mlp(cfg)(_norm(cfg, "mlp_norm")(x_BTD))
        return constrain(x_BTD, ("batch", "length", "embed")), None


class DecoderBlock(nn.Module):
    """Causal self-attention with the shared bias, cross-attention to the encoder, MLP."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array, encoded_BSD: jax.Array, self_mask_BTT: jax.Array | None,
                 cross_mask_BTS: jax.Array | None, bias_HTT: jax.Array,
                 cache: DecoderLayerCache | None = None):
        """The block's output and, when decoding, its cache: self-attention keys appended,
        cross K/V projected from `encoded_BSD` on the first step and reused after."""
        cfg = self.config
        self_cache, cross_kv = (None, None) if cache is None else cache
        attended = _attention(cfg, "self_attn")(
            _norm(cfg, "self_attn_norm")(x_BTD), causal=True, mask=self_mask_BTT,
            bias_HTS=bias_HTT, cache=self_cache,
        )
        attended_BTD, self_cache = attended if cache is not None else (attended, None)
        x_BTD = constrain(x_BTD + attended_BTD, ("batch", "length", "embed"))
        cross_attention = _attention(cfg, "cross_attn")
        if cache is not None and cross_kv is None:
            cross_kv = cross_attention.key_value(encoded_BSD)
        attended_BTD = cross_attention(
            _norm(cfg, "cross_attn_norm")(x_BTD), encoded_BSD, mask=cross_mask_BTS, kv=cross_kv
        )
        x_BTD = constrain(x_BTD + attended_BTD, ("batch", "length", "embed"))
        x_BTD = x_BTD + _mlp(cfg)(_norm(cfg, "mlp_norm")(x_BTD))
        x_BTD = constrain(x_BTD, ("batch", "length", "embed"))
        return x_BTD, None if cache is None else (self_cache, cross_kv)


class Encoder(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x_BSD: jax.Array, mask_BSS: jax.Array | None) -> jax.Array:
        cfg = self.config
        length = x_BSD.shape[1]
        bias_HSS = RelativePositionBias(cfg.n_heads, cfg.relpos_buckets, cfg.relpos_max_distance,
                                        bidirectional=True, name="relpos")(length, length)
        x_BSD, _ = apply_layers(EncoderBlock, cfg, cfg.n_layers, "layer", x_BSD,
                                (mask_BSS, bias_HSS))
        return _norm(cfg, "final_norm")(x_BSD)


class Decoder(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array, encoded_BSD: jax.Array | None,
                 self_mask_BTT: jax.Array | None, cross_mask_BTS: jax.Array | None,
                 cache: Any = None) -> tuple[jax.Array, Any]:
        """Normalised output and the updated cache (None without one). With a cache the bias
        is that of the queries' real positions against every slot."""
        cfg = self.config
        length = x_BTD.shape[1]
        relpos = RelativePositionBias(cfg.n_heads, cfg.relpos_buckets, cfg.relpos_max_distance,
                                      bidirectional=False, name="relpos")
        if cache is None:
            bias_HTT = relpos(length, length)
        else:
            slots = jax.tree.leaves(cache)[0].shape[-3]
            bias_HTT = relpos(length, slots, offset=cache_index(cache))
        x_BTD, cache = apply_layers(DecoderBlock, cfg, cfg.decoder_layers, "layer", x_BTD,
                                    (encoded_BSD, self_mask_BTT, cross_mask_BTS, bias_HTT), cache)
        return _norm(cfg, "final_norm")(x_BTD), cache


class T5(nn.Module):
    """`__call__` is the training forward pass; `encode` and `decode` (with `method=`) are
    generation's entry points: the encoder once, then one cached decoder step per token."""

    config: ModelConfig

    def setup(self) -> None:
        cfg = self.config
        dtype = compute_dtype(cfg)
        self.token_embed = Embed(cfg.vocab_size, cfg.d_model, dtype)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if not cfg.tie_embeddings:
            self.lm_head = Dense((cfg.vocab_size,), ("embed", "vocab"), use_bias=False, dtype=dtype,
                                 kernel_init=normal(0.02))

    def __call__(
        self,
        input_ids: jax.Array,
        decoder_input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        decoder_attention_mask: jax.Array | None = None,
    ) -> jax.Array:
        """Decoder logits B×T×V (float32) for encoder ids B×S and decoder ids B×T (the
        targets shifted right); masks are 1 on real tokens, 0 on padding."""
        encoded_BSD = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, encoded_BSD, attention_mask, decoder_attention_mask)

    def encode(self, input_ids: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
        """The encoder's output B×S×D for ids B×S (mask 1 on real tokens)."""
        ids_BS = constrain(jnp.asarray(input_ids), ("batch", "length"))
        input_keys_B1S = None if attention_mask is None else key_padding_mask(attention_mask)
        return self.encoder(
            constrain(self.token_embed(ids_BS), ("batch", "length", "embed")), input_keys_B1S
        )

    def decode(
        self,
        decoder_input_ids: jax.Array,
        encoded_BSD: jax.Array | None,
        attention_mask: jax.Array | None = None,
        decoder_attention_mask: jax.Array | None = None,
        cache: Any = None,
    ) -> jax.Array | tuple[jax.Array, Any]:
        """Decoder logits B×T×V for the encoder output; with a `cache` (from `init_cache`),
        the ids are the tokens after those cached and (logits, updated cache) come back.
        `attention_mask` is the encoder's; `decoder_attention_mask` applies without a cache."""
        cfg = self.config
        if cache is not None and decoder_attention_mask is not None:
            raise ConfigError("T5.decode takes decoder_attention_mask only without a cache: "
                              "cached decoding feeds real tokens only; drop the mask")
        decoder_ids_BT = constrain(jnp.asarray(decoder_input_ids), ("batch", "length"))
        # B×1×S masks of real keys, broadcast over queries by every attention that reads them.
        input_keys_B1S = None if attention_mask is None else key_padding_mask(attention_mask)
        decoder_keys_B1T = (
            None if decoder_attention_mask is None else key_padding_mask(decoder_attention_mask)
        )
        x_BTD, new_cache = self.decoder(
            constrain(self.token_embed(decoder_ids_BT), ("batch", "length", "embed")), encoded_BSD,
            decoder_keys_B1T, input_keys_B1S, cache,
        )
        x_BTD = mup_readout(cfg, x_BTD)
        if cfg.tie_embeddings:
            logits_BTV = self.token_embed.attend(x_BTD * cfg.d_model**-0.5)
        else:
            logits_BTV = self.lm_head(x_BTD)
        logits_BTV = constrain(logits_BTV.astype(jnp.float32), ("batch", "length", "vocab"))
        return logits_BTV if cache is None else (logits_BTV, new_cache)
