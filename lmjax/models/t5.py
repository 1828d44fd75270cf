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

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmjax.config import ModelConfig
from lmjax.models.gpt import REMAT_POLICIES, compute_dtype
from lmjax.models.layers import (
    Dense, Embed, Mlp, MultiHeadAttention, Norm, RelativePositionBias, constrain, key_padding_mask,
    normal,
)


def _attention(cfg: ModelConfig, name: str) -> MultiHeadAttention:
    return MultiHeadAttention(
        n_heads=cfg.n_heads, n_kv_heads=cfg.kv_heads, head_dim=cfg.d_head, use_bias=cfg.use_bias,
        dtype=compute_dtype(cfg), scale=1.0, name=name,
    )


def _norm(cfg: ModelConfig, name: str) -> Norm:
    return Norm(cfg.norm, cfg.norm_eps, cfg.use_bias, compute_dtype(cfg), name=name)


def _mlp(cfg: ModelConfig) -> Mlp:
    return Mlp(cfg.d_ff, cfg.mlp, cfg.use_bias, compute_dtype(cfg), name="mlp")


def _remat(block: type[nn.Module], cfg: ModelConfig) -> type[nn.Module]:
    return block if cfg.remat == "none" else nn.remat(block, policy=REMAT_POLICIES[cfg.remat])


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
        return constrain(x_BTD, ("batch", "length", "embed"))


class DecoderBlock(nn.Module):
    """Causal self-attention with the shared bias, cross-attention to the encoder, MLP."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array, encoded_BSD: jax.Array, self_mask_BTT: jax.Array | None,
                 cross_mask_BTS: jax.Array | None, bias_HTT: jax.Array):
        cfg = self.config
        attended_BTD = _attention(cfg, "self_attn")(
            _norm(cfg, "self_attn_norm")(x_BTD), causal=True, mask=self_mask_BTT, bias_HTS=bias_HTT
        )
        x_BTD = constrain(x_BTD + attended_BTD, ("batch", "length", "embed"))
        attended_BTD = _attention(cfg, "cross_attn")(
            _norm(cfg, "cross_attn_norm")(x_BTD), encoded_BSD, mask=cross_mask_BTS
        )
        x_BTD = constrain(x_BTD + attended_BTD, ("batch", "length", "embed"))
        x_BTD = x_BTD + _mlp(cfg)(_norm(cfg, "mlp_norm")(x_BTD))
        return constrain(x_BTD, ("batch", "length", "embed"))


class Encoder(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x_BSD: jax.Array, mask_BSS: jax.Array | None) -> jax.Array:
        cfg = self.config
        length = x_BSD.shape[1]
        bias_HSS = RelativePositionBias(cfg.n_heads, cfg.relpos_buckets, cfg.relpos_max_distance,
                                        bidirectional=True, name="relpos")(length, length)
        block = _remat(EncoderBlock, cfg)
        for layer in range(cfg.n_layers):
            x_BSD = block(cfg, name=f"layer_{layer}")(x_BSD, mask_BSS, bias_HSS)
        return _norm(cfg, "final_norm")(x_BSD)


class Decoder(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array, encoded_BSD: jax.Array, self_mask_BTT: jax.Array | None,
                 cross_mask_BTS: jax.Array | None) -> jax.Array:
        cfg = self.config
        length = x_BTD.shape[1]
        bias_HTT = RelativePositionBias(cfg.n_heads, cfg.relpos_buckets, cfg.relpos_max_distance,
                                        bidirectional=False, name="relpos")(length, length)
        block = _remat(DecoderBlock, cfg)
        for layer in range(cfg.decoder_layers):
            x_BTD = block(cfg, name=f"layer_{layer}")(x_BTD, encoded_BSD, self_mask_BTT,
                                                      cross_mask_BTS, bias_HTT)
        return _norm(cfg, "final_norm")(x_BTD)


class T5(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        decoder_input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        decoder_attention_mask: jax.Array | None = None,
    ) -> jax.Array:
        """Decoder logits B×T×V (float32) for encoder ids B×S and decoder ids B×T (the
        targets shifted right); masks are 1 on real tokens, 0 on padding."""
        cfg = self.config
        dtype = compute_dtype(cfg)
        ids_BS = constrain(jnp.asarray(input_ids), ("batch", "length"))
        decoder_ids_BT = constrain(jnp.asarray(decoder_input_ids), ("batch", "length"))
        token_embed = Embed(cfg.vocab_size, cfg.d_model, dtype, name="token_embed")
        # B×1×S masks of real keys, broadcast over queries by every attention that reads them.
        input_keys_B1S = None if attention_mask is None else key_padding_mask(attention_mask)
        decoder_keys_B1T = (
            None if decoder_attention_mask is None else key_padding_mask(decoder_attention_mask)
        )
        encoded_BSD = Encoder(cfg, name="encoder")(
            constrain(token_embed(ids_BS), ("batch", "length", "embed")), input_keys_B1S
        )
        x_BTD = Decoder(cfg, name="decoder")(
            constrain(token_embed(decoder_ids_BT), ("batch", "length", "embed")), encoded_BSD,
            decoder_keys_B1T, input_keys_B1S,
        )
        if cfg.tie_embeddings:
            logits_BTV = token_embed.attend(x_BTD * cfg.d_model**-0.5)
        else:
            logits_BTV = Dense((cfg.vocab_size,), ("embed", "vocab"), use_bias=False, dtype=dtype,
                               kernel_init=normal(0.02), name="lm_head")(x_BTD)
        return constrain(logits_BTV.astype(jnp.float32), ("batch", "length", "vocab"))
