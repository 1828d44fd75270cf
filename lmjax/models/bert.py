"""Encoder-only transformer for masked language modelling (Devlin et al. 2018).

Where BERT differs from the GPT: token + learned position + segment embeddings followed by a
LayerNorm, post-LayerNorm blocks (normalise after each residual sum), exact (erf) GELU,
bidirectional attention that hides padded keys, and an MLM head (dense + GELU + LayerNorm,
then the tied embedding with its own bias). The next-sentence head on [CLS] is optional and
off by default, as in RoBERTa. BERT-base uses `norm_eps=1e-12`, `mlp=gelu_exact`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmjax.config import ModelConfig
from lmjax.models.gpt import compute_dtype
from lmjax.models.attention import MultiHeadAttention, key_padding_mask
from lmjax.models.layers import (ACTIVATIONS, Dense, Embed, Mlp, constrain, mup_attention_scale,
                                 mup_readout, norm_layer)
from lmjax.models.scan import apply_layers


def default_positions(ids_BT: jax.Array, attention_mask: jax.Array | None,
                      skip_padding: bool) -> jax.Array:
    """0..T-1 (BERT); with `skip_padding` (RoBERTa) each real token's position counts the real
    tokens before it, so a left-padded row scores as it would alone."""
    if not skip_padding or attention_mask is None:
        return jnp.broadcast_to(jnp.arange(ids_BT.shape[1]), ids_BT.shape)
    return jnp.maximum(jnp.cumsum(jnp.asarray(attention_mask, jnp.int32), axis=1) - 1, 0)


class EncoderBlock(nn.Module):
    """norm(x + attn(x)), then norm(x + mlp(x)): BERT's post-LayerNorm order."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array, mask_BTS: jax.Array | None) -> tuple[jax.Array, None]:
        cfg = self.config
        dtype = compute_dtype(cfg)
        attention = MultiHeadAttention(
            d_model=cfg.d_model, n_heads=cfg.n_heads, n_kv_heads=cfg.kv_heads, head_dim=cfg.d_head,
            use_bias=cfg.use_bias, dtype=dtype, attention_impl=cfg.attention_impl,
            scale=mup_attention_scale(cfg, None), name="attn",
        )
        x_BTD = x_BTD + attention(x_BTD, mask=mask_BTS)
        x_BTD = norm_layer(cfg.norm, cfg.norm_eps, cfg.use_bias, dtype, name="attn_norm")(x_BTD)
        x_BTD = constrain(x_BTD, ("batch", "length", "embed"))
        x_BTD = x_BTD + Mlp(cfg.d_ff, cfg.mlp, cfg.use_bias, dtype, name="mlp")(x_BTD)
        x_BTD = norm_layer(cfg.norm, cfg.norm_eps, cfg.use_bias, dtype, name="mlp_norm")(x_BTD)
        return constrain(x_BTD, ("batch", "length", "embed")), None


class MlmHead(nn.Module):
    """Transform (dense, activation, LayerNorm), then logits against the output embedding."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x_BTD: jax.Array, token_embed: Embed) -> jax.Array:
        cfg = self.config
        dtype = compute_dtype(cfg)
        h_BTD = Dense((cfg.d_model,), ("embed", "mlp"), dtype=dtype, name="transform")(x_BTD)
        h_BTD = ACTIVATIONS[cfg.mlp](h_BTD)
        h_BTD = norm_layer(cfg.norm, cfg.norm_eps, cfg.use_bias, dtype, name="transform_norm")(h_BTD)
        h_BTD = mup_readout(cfg, h_BTD)
        if cfg.tie_embeddings:
            logits_BTV = token_embed.attend(h_BTD)
        else:
            logits_BTV = Dense((cfg.vocab_size,), ("embed", "vocab"), use_bias=False, dtype=dtype,
                               name="decoder")(h_BTD)
        bias_V = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                            (cfg.vocab_size,), jnp.float32)
        return logits_BTV + bias_V.astype(dtype)


class NspHead(nn.Module):
    """BERT's pooler (dense + tanh on the [CLS] vector) and a two-way classifier:
    class 0 means segment B follows segment A, class 1 that it was drawn from elsewhere."""

    config: ModelConfig

    @nn.compact
    def __call__(self, cls_BD: jax.Array) -> jax.Array:
        dtype = compute_dtype(self.config)
        pooled_BD = jnp.tanh(
            Dense((self.config.d_model,), ("embed", "mlp"), dtype=dtype, name="pooler")(cls_BD)
        )
        pooled_BD = mup_readout(self.config, pooled_BD)
        return Dense((2,), ("mlp", "classes"), dtype=dtype, name="classifier")(pooled_BD)


class BERT(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
        positions: jax.Array | None = None,
        masked_positions: jax.Array | None = None,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        """MLM logits B×T×V (float32); with `config.nsp`, also next-sentence logits B×2.

        `attention_mask` (1 = real token) hides padding; `token_type_ids` default to
        segment 0 and `positions` to 0..T-1 (`default_positions`). Given `masked_positions` B×P, the MLM head runs
        at those positions only and the logits are B×P×V (training needs no others).
        """
        cfg = self.config
        dtype = compute_dtype(cfg)
        ids_BT = constrain(jnp.asarray(input_ids), ("batch", "length"))
        positions_BT = (
            default_positions(ids_BT, attention_mask, cfg.positions_skip_padding)
            if positions is None else jnp.asarray(positions)
        )
        types_BT = jnp.zeros_like(ids_BT) if token_type_ids is None else jnp.asarray(token_type_ids)
        token_embed = Embed(cfg.vocab_size, cfg.d_model, dtype, name="token_embed")
        x_BTD = (
            token_embed(ids_BT)
            + Embed(cfg.max_len, cfg.d_model, dtype, axes=("length", "embed"),
                    name="position_embed")(positions_BT)
            + Embed(cfg.type_vocab_size, cfg.d_model, dtype, axes=("type_vocab", "embed"),
                    name="type_embed")(types_BT)
        )
        x_BTD = norm_layer(cfg.norm, cfg.norm_eps, cfg.use_bias, dtype, name="embed_norm")(x_BTD)
        x_BTD = constrain(x_BTD, ("batch", "length", "embed"))
        mask_BTS = None if attention_mask is None else key_padding_mask(attention_mask)
        x_BTD, _ = apply_layers(EncoderBlock, cfg, cfg.n_layers, "layer", x_BTD, (mask_BTS,))
        # P predicted positions: all T of them, or the P given in masked_positions.
        predicted_BPD = x_BTD if masked_positions is None else jnp.take_along_axis(
            x_BTD, jnp.asarray(masked_positions)[..., None], axis=1)
        logits_BPV = MlmHead(cfg, name="mlm")(predicted_BPD, token_embed)
        logits_BPV = constrain(logits_BPV.astype(jnp.float32), ("batch", "length", "vocab"))
        if not cfg.nsp:
            return logits_BPV
        return logits_BPV, NspHead(cfg, name="nsp")(x_BTD[:, 0]).astype(jnp.float32)
