"""The small building blocks shared by GPT, BERT and T5: sharding names, initialisers,
Embed/Dense, norms, RoPE, the MLP and T5's relative-position bias (attention itself, which
uses them, is `lmjax.models.attention`).

Every parameter is created through `nn.with_logical_partitioning`, so its dimensions carry
logical names (vocab, embed, heads, kv, mlp, ...), and the main activations pass through
`constrain`; `lmjax.parallel` maps those names to mesh axes. Shapes are suffixed on names:
B batch, T query length, S key length, D d_model, H query heads, G key/value heads,
K head size, F feed-forward size, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def constrain(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
    """Ties an activation's dimensions to logical axes (a no-op without a mesh)."""
    return nn.with_logical_constraint(x, names)


def normal(stddev: float) -> Initializer:
    return nn.initializers.normal(stddev)


def mup_readout(config: Any, x: jax.Array) -> jax.Array:
    """The output layer's input times µP's logit multiplier 1/m (`ModelConfig.logit_multiplier`;
    the rest of µP is `lmjax.train.mup`); untouched under the standard parametrization."""
    return x if config.parametrization != "mup" else x * config.logit_multiplier


def mup_attention_scale(config: Any, standard: float | None) -> float | None:
    """The attention score scale: `standard` (None: 1/sqrt(d_head)), or under µP that times
    m^-1/2, which makes it ∝ 1/d_head (`ModelConfig.attention_multiplier`)."""
    if config.parametrization != "mup":
        return standard
    return (config.d_head**-0.5 if standard is None else standard) * config.attention_multiplier


class Embed(nn.Module):
    """Token (or position, or segment) embedding table, reusable as a tied output layer."""

    num_embeddings: int
    features: int
    dtype: Any = jnp.float32
    init_std: float = 0.02
    axes: tuple[str, str] = ("vocab", "embed")

    def setup(self) -> None:
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(normal(self.init_std), self.axes),
            (self.num_embeddings, self.features),
            jnp.float32,
        )

    def __call__(self, ids: jax.Array) -> jax.Array:
        """Looks ids up in a gathered copy of the table: a lookup into a vocab- and
        embed-sharded table cannot be partitioned and would be replicated anyway."""
        table = constrain(self.embedding, (None, None))
        return jnp.take(table, ids, axis=0).astype(self.dtype)

    def attend(self, x_BTD: jax.Array) -> jax.Array:
        """Logits against the embedding table (GPT-2's tied output layer)."""
        return jnp.einsum("btd,vd->btv", x_BTD, self.embedding.astype(self.dtype))


class Dense(nn.Module):
    """x[..., *in] · W[*in, *out] + b[*out], with logical names on every dimension of W.

    Multi-dimensional kernels such as (embed, heads, kv) keep attention free of reshapes,
    so each head dimension can be sharded by name.
    """

    features: Sequence[int]
    axes: Sequence[str]
    in_dims: int = 1
    use_bias: bool = True
    dtype: Any = jnp.float32
    kernel_init: Initializer = normal(0.02)

    @nn.compact
    def weights(self, in_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array | None]:
        """The float32 kernel (*in_shape, *features) and bias (or None), so a caller can fuse
        several projections of one input into a single matmul (`MultiHeadAttention`)."""
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(self.kernel_init, tuple(self.axes)),
            (*in_shape, *self.features),
            jnp.float32,
        )
        if not self.use_bias:
            return kernel, None
        bias = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.zeros, tuple(self.axes[self.in_dims:])),
            tuple(self.features),
            jnp.float32,
        )
        return kernel, bias

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel, bias = self.weights(x.shape[-self.in_dims:])
        letters = "abcdefgh"
        x_in = letters[: self.in_dims]
        k_out = "uvwxyz"[: len(self.features)]
        y = jnp.einsum(f"...{x_in},{x_in}{k_out}->...{k_out}", x, kernel.astype(self.dtype))
        if bias is not None:
            y = y + bias.astype(self.dtype)
        return y


def norm_layer(kind: str = "layernorm", eps: float = 1e-5, use_bias: bool = True,
               dtype: Any = jnp.float32, name: str | None = None) -> nn.Module:
    """LayerNorm (mean and variance, optional bias) or RMSNorm (no mean, no bias): flax's own
    modules, statistics in float32, parameters `scale` and `bias` named by logical axis.

    Flax computes mean and mean square in one pass. lmjax's earlier two-pass LayerNorm (the
    variance of x − mean) led XLA to carry every layer's normalisation gradient to one late
    fusion, which slowed training on CPU (figures in docs/performance.md).
    """
    scale_init = nn.with_logical_partitioning(nn.initializers.ones, ("embed",))
    if kind == "rmsnorm":
        return nn.RMSNorm(epsilon=eps, dtype=dtype, scale_init=scale_init, name=name)
    bias_init = nn.with_logical_partitioning(nn.initializers.zeros, ("embed",))
    return nn.LayerNorm(epsilon=eps, dtype=dtype, use_bias=use_bias, scale_init=scale_init,
                        bias_init=bias_init, name=name)


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """transformers' `rope_type` linear or llama3 with its parameters (`model.rope_scaling`)."""

    kind: str = "none"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_len: int = 8192

    def inverse_frequencies(self, inv_freq_K2: jax.Array) -> jax.Array:
        """Linear stretches every wavelength by `factor`; llama3 stretches the long
        wavelengths (beyond original_max_len / low_freq_factor) by it, keeps the short ones
        (below original_max_len / high_freq_factor) and blends the band between."""
        if self.kind == "linear":
            return inv_freq_K2 / self.factor
        if self.kind != "llama3":
            return inv_freq_K2
        wavelength_K2 = 2 * math.pi / inv_freq_K2
        smooth_K2 = (self.original_max_len / wavelength_K2 - self.low_freq_factor) / (
            self.high_freq_factor - self.low_freq_factor)
        blended_K2 = (1 - smooth_K2) * inv_freq_K2 / self.factor + smooth_K2 * inv_freq_K2
        long_K2 = wavelength_K2 > self.original_max_len / self.low_freq_factor
        short_K2 = wavelength_K2 < self.original_max_len / self.high_freq_factor
        return jnp.where(long_K2, inv_freq_K2 / self.factor, jnp.where(short_K2, inv_freq_K2, blended_K2))


def rope(x_BTHK: jax.Array, positions_BT: jax.Array, theta: float,
         scaling: RopeScaling | None = None) -> jax.Array:
    """Rotary position embedding on interleaved pairs (x0,x1), (x2,x3), ... as in Meta's Llama
    and llama2.c, so their checkpoints load without permuting weights (transformers' halves
    layout is permuted into pairs on import)."""
    head_dim = x_BTHK.shape[-1]
    inv_freq_K2 = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    if scaling is not None:
        inv_freq_K2 = scaling.inverse_frequencies(inv_freq_K2)
    angle_BTK2 = positions_BT[..., None].astype(jnp.float32) * inv_freq_K2
    cos_BT1K2 = jnp.cos(angle_BTK2)[:, :, None, :]
    sin_BT1K2 = jnp.sin(angle_BTK2)[:, :, None, :]
    x32 = x_BTHK.astype(jnp.float32).reshape(*x_BTHK.shape[:-1], head_dim // 2, 2)
    even, odd = x32[..., 0], x32[..., 1]
    rotated = jnp.stack(
        [even * cos_BT1K2 - odd * sin_BT1K2, even * sin_BT1K2 + odd * cos_BT1K2], axis=-1
    )
    return rotated.reshape(x_BTHK.shape).astype(x_BTHK.dtype)


ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_exact": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "swiglu": jax.nn.silu,
    "geglu": lambda x: jax.nn.gelu(x, approximate=True),
}
GATED = ("swiglu", "geglu")


class Mlp(nn.Module):
    """Feed-forward block: act(x·W_in)·W_out, or gated act(x·W_gate)·(x·W_in)·W_out."""

    d_ff: int
    kind: str = "gelu"
    use_bias: bool = True
    dtype: Any = jnp.float32
    init_std: float = 0.02
    out_init_std: float = 0.02

    @nn.compact
    def __call__(self, x_BTD: jax.Array) -> jax.Array:
        def dense(features: int, axes: tuple[str, str], std: float, name: str) -> Dense:
            return Dense((features,), axes, use_bias=self.use_bias, dtype=self.dtype,
                         kernel_init=normal(std), name=name)

        h_BTF = ACTIVATIONS[self.kind](dense(self.d_ff, ("embed", "mlp"), self.init_std, "wi")(x_BTD))
        if self.kind in GATED:
            h_BTF = h_BTF * dense(self.d_ff, ("embed", "mlp"), self.init_std, "wi_up")(x_BTD)
        h_BTF = constrain(h_BTF, ("batch", "length", "mlp"))
        return dense(x_BTD.shape[-1], ("mlp", "embed"), self.out_init_std, "wo")(h_BTF)


def relative_position_bucket(
    relative_TS: jax.Array, bidirectional: bool, num_buckets: int, max_distance: int
) -> jax.Array:
    """T5's bucket of each key-minus-query offset: exact for small offsets, logarithmic up to
    `max_distance`, one shared bucket beyond; the decoder only sees the past, so it spends all
    buckets on non-positive offsets."""
    relative_TS = jnp.asarray(relative_TS, jnp.int32)
    bucket_TS = jnp.zeros_like(relative_TS)
    if bidirectional:
        num_buckets //= 2
        bucket_TS = bucket_TS + (relative_TS > 0) * num_buckets
        distance_TS = jnp.abs(relative_TS)
    else:
        distance_TS = -jnp.minimum(relative_TS, 0)
    max_exact = num_buckets // 2
    safe_TS = jnp.maximum(distance_TS, 1).astype(jnp.float32)
    log_ratio_TS = jnp.log(safe_TS / max_exact) / math.log(max_distance / max_exact)
    large_TS = max_exact + (log_ratio_TS * (num_buckets - max_exact)).astype(relative_TS.dtype)
    large_TS = jnp.minimum(large_TS, num_buckets - 1)
    return bucket_TS + jnp.where(distance_TS < max_exact, distance_TS, large_TS)


class RelativePositionBias(nn.Module):
    """T5's learned attention bias per head and offset bucket, computed once per stack and
    shared by all its layers."""

    n_heads: int
    num_buckets: int = 32
    max_distance: int = 128
    bidirectional: bool = True

    @nn.compact
    def __call__(self, query_len: int, key_len: int, offset: jax.Array | int = 0) -> jax.Array:
        """H×T×S float32 bias to add to attention scores; `offset` is the position of the first
        query (a decoding step's query sits after the tokens already cached)."""
        table_NH = self.param(
            "embedding",
            nn.with_logical_partitioning(normal(0.02), ("relpos_buckets", "heads")),
            (self.num_buckets, self.n_heads),
            jnp.float32,
        )
        queries_T1 = jnp.arange(query_len)[:, None]
        queries_T1 = queries_T1 if isinstance(offset, int) and offset == 0 else queries_T1 + offset
        relative_TS = jnp.arange(key_len)[None, :] - queries_T1
        bucket_TS = relative_position_bucket(
            relative_TS, self.bidirectional, self.num_buckets, self.max_distance
        )
        return jnp.transpose(jnp.take(table_NH, bucket_TS, axis=0), (2, 0, 1))
