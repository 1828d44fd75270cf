"""Building blocks shared by GPT, BERT and T5.

Every parameter is created through `nn.with_logical_partitioning`, so its dimensions carry
logical names (vocab, embed, heads, kv, mlp, ...), and the main activations pass through
`constrain`; `lmjax.parallel` maps those names to mesh axes. Shapes are suffixed on names:
B batch, T query length, S key length, D d_model, H query heads, G key/value heads,
K head size, F feed-forward size, V vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmjax.models.attention_kernels import kernel_attend, log_fallback, unsupported
from lmjax.models.backend import resolve_attention

Initializer = Callable[..., jax.Array]
NEG_INF = -1e9


def constrain(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
    """Ties an activation's dimensions to logical axes (a no-op without a mesh)."""
    return nn.with_logical_constraint(x, names)


def normal(stddev: float) -> Initializer:
    return nn.initializers.normal(stddev)


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
    fusion: the GPT-3 Small shape's forward+backward took 6.1 s on this CPU against 4.6 s.
    """
    scale_init = nn.with_logical_partitioning(nn.initializers.ones, ("embed",))
    if kind == "rmsnorm":
        return nn.RMSNorm(epsilon=eps, dtype=dtype, scale_init=scale_init, name=name)
    bias_init = nn.with_logical_partitioning(nn.initializers.zeros, ("embed",))
    return nn.LayerNorm(epsilon=eps, dtype=dtype, use_bias=use_bias, scale_init=scale_init,
                        bias_init=bias_init, name=name)


def rope(x_BTHK: jax.Array, positions_BT: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding on interleaved pairs (x0,x1), (x2,x3), ... as in Meta's Llama
    and llama2.c, so their checkpoints load without permuting weights."""
    head_dim = x_BTHK.shape[-1]
    inv_freq_K2 = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angle_BTK2 = positions_BT[..., None].astype(jnp.float32) * inv_freq_K2
    cos_BT1K2 = jnp.cos(angle_BTK2)[:, :, None, :]
    sin_BT1K2 = jnp.sin(angle_BTK2)[:, :, None, :]
    x32 = x_BTHK.astype(jnp.float32).reshape(*x_BTHK.shape[:-1], head_dim // 2, 2)
    even, odd = x32[..., 0], x32[..., 1]
    rotated = jnp.stack(
        [even * cos_BT1K2 - odd * sin_BT1K2, even * sin_BT1K2 + odd * cos_BT1K2], axis=-1
    )
    return rotated.reshape(x_BTHK.shape).astype(x_BTHK.dtype)


def causal_mask(query_len: int, key_len: int, offset: int = 0) -> jax.Array:
    """True where query position i (shifted by `offset`) may attend to key position j <= i."""
    q = jnp.arange(query_len)[:, None] + offset
    k = jnp.arange(key_len)[None, :]
    return k <= q


def padding_mask(query_valid_BT: jax.Array, key_valid_BS: jax.Array) -> jax.Array:
    """B×T×S mask of pairs where both query and key are real tokens."""
    return query_valid_BT[:, :, None].astype(bool) & key_valid_BS[:, None, :].astype(bool)


def attend(
    q_BTHK: jax.Array,
    k_BSGK: jax.Array,
    v_BSGK: jax.Array,
    mask: jax.Array | None = None,
    bias_HTS: jax.Array | None = None,
    scale: float | None = None,
) -> jax.Array:
    """Softmax attention with grouped-query heads (H = G·R query heads share G kv heads).

    `mask` broadcasts to B×T×S (True = attend); `bias_HTS` (T5's relative bias) may carry a
    leading batch dimension. Scores and softmax run in float32.
    """
    batch, q_len, n_heads, head_dim = q_BTHK.shape
    n_kv = k_BSGK.shape[2]
    scale = head_dim**-0.5 if scale is None else scale
    q, q_spec, kv_spec, score_spec = _grouped_queries(q_BTHK, n_kv)
    scores = jnp.einsum(f"{q_spec},{kv_spec}->{score_spec}", q, k_BSGK).astype(jnp.float32) * scale
    heads_shape = scores.shape[1:-2]
    if bias_HTS is not None:
        bias = bias_HTS.astype(jnp.float32)
        bias_BHTS = bias if bias.ndim == 4 else bias[None]
        scores = scores + bias_BHTS.reshape(bias_BHTS.shape[0], *heads_shape, *bias_BHTS.shape[-2:])
    if mask is not None:
        mask_BTS = jnp.broadcast_to(mask, (batch, q_len, k_BSGK.shape[1]))
        scores = jnp.where(mask_BTS.reshape(batch, *(1,) * len(heads_shape), *mask_BTS.shape[1:]),
                           scores, NEG_INF)
    probs = jax.nn.softmax(scores, axis=-1).astype(v_BSGK.dtype)
    out = jnp.einsum(f"{score_spec},{kv_spec}->{q_spec}", probs, v_BSGK)
    return out.reshape(batch, q_len, n_heads, head_dim)


def _grouped_queries(q_BTHK: jax.Array, n_kv: int) -> tuple[jax.Array, str, str, str]:
    """Queries and einsum specs for `attend`: with grouped kv heads the H query heads are
    split into G groups of R; with one kv head per query head the plain B×H×T×S layout is
    kept, since the size-1 group axis costs XLA extra transposes in the backward pass."""
    batch, q_len, n_heads, head_dim = q_BTHK.shape
    if n_kv == n_heads:
        return q_BTHK, "bthk", "bshk", "bhts"
    q_BTGRK = q_BTHK.reshape(batch, q_len, n_kv, n_heads // n_kv, head_dim)
    return q_BTGRK, "btgrk", "bsgk", "bgrts"


def blocked_causal_attend(q_BTHK, k_BSGK, v_BSGK, blocks: int, scale: float | None = None):
    """Causal self-attention in `blocks` query blocks, each attending only to keys up to its
    end, which skips the fully masked upper blocks (measured faster on CPU; same result).
    Blocks of `TILED_MIN_ROWS` queries or more go to `tiled_causal_attend`, which scores the
    same pairs a key block at a time (faster from there on; slower below, forward and
    backward, at a training shape of 128 tokens in 4 blocks)."""
    q_len = q_BTHK.shape[1]
    if blocks <= 1 or q_len % blocks:
        return attend(q_BTHK, k_BSGK, v_BSGK, causal_mask(q_len, q_len), scale=scale)
    size = q_len // blocks
    if size >= TILED_MIN_ROWS:
        return tiled_causal_attend(q_BTHK, k_BSGK, v_BSGK, blocks, scale=scale)
    outputs = []
    for block in range(blocks):
        end = (block + 1) * size
        mask = causal_mask(size, end, offset=block * size)
        outputs.append(
            attend(q_BTHK[:, block * size:end], k_BSGK[:, :end], v_BSGK[:, :end], mask, scale=scale)
        )
    return jnp.concatenate(outputs, axis=1)


TILED_MIN_ROWS = 64


def tiled_causal_attend(q_BTHK, k_BSGK, v_BSGK, tiles: int, scale: float | None = None):
    """Causal self-attention over `tiles`×`tiles` blocks of queries and keys with a running
    (online) softmax, as FlashAttention computes it: only blocks on or below the diagonal
    are scored (the pairs `blocked_causal_attend` scores), and each block's scores are small
    enough to stay in cache. On a 2-core CPU at GPT-2 small's shape (4 × 1,024 tokens) a
    layer's attention took 144 ms against 214 ms in query blocks. Grouped kv heads: the R
    query heads sharing a kv head are scored as R·t query rows against it."""
    batch, q_len, n_heads, head_dim = q_BTHK.shape
    n_kv = k_BSGK.shape[2]
    if tiles <= 1 or q_len % tiles:
        return attend(q_BTHK, k_BSGK, v_BSGK, causal_mask(q_len, q_len), scale=scale)
    size, repeats = q_len // tiles, n_heads // n_kv
    scale = head_dim**-0.5 if scale is None else scale
    q_BGRTK = (q_BTHK * scale).reshape(batch, q_len, n_kv, repeats, head_dim).transpose(0, 2, 3, 1, 4)
    k_BGSK, v_BGSK = (x.transpose(0, 2, 1, 3) for x in (k_BSGK, v_BSGK))
    diagonal_QS = jnp.tile(causal_mask(size, size), (repeats, 1))
    outputs = []
    for row in range(tiles):
        rows = slice(row * size, (row + 1) * size)
        q_BGQK = q_BGRTK[:, :, :, rows].reshape(batch, n_kv, repeats * size, head_dim)
        running = None
        for col in range(row + 1):
            keys = slice(col * size, (col + 1) * size)
            running = _online_softmax_step(running, q_BGQK, k_BGSK[:, :, keys], v_BGSK[:, :, keys],
                                           diagonal_QS if col == row else None)
        _, sum_BGQ, acc_BGQK = running
        outputs.append((acc_BGQK / sum_BGQ[..., None]).reshape(batch, n_kv, repeats, size, head_dim))
    out_BGRTK = jnp.concatenate(outputs, axis=3).astype(q_BTHK.dtype)
    return out_BGRTK.transpose(0, 3, 1, 2, 4).reshape(batch, q_len, n_heads, head_dim)


def _online_softmax_step(running, q_BGQK, k_BGSK, v_BGSK, mask_QS):
    """One key block of the online softmax: the running (max, sum of exponentials, weighted
    values) of each query row after this block; None starts a row."""
    scores_BGQS = jnp.einsum("bgqk,bgsk->bgqs", q_BGQK, k_BGSK).astype(jnp.float32)
    if mask_QS is not None:
        scores_BGQS = jnp.where(mask_QS, scores_BGQS, NEG_INF)
    block_max_BGQ = scores_BGQS.max(axis=-1)
    max_BGQ = block_max_BGQ if running is None else jnp.maximum(running[0], block_max_BGQ)
    probs_BGQS = jnp.exp(scores_BGQS - max_BGQ[..., None])
    values_BGQK = jnp.einsum("bgqs,bgsk->bgqk", probs_BGQS.astype(v_BGSK.dtype), v_BGSK)
    sum_BGQ, acc_BGQK = probs_BGQS.sum(axis=-1), values_BGQK.astype(jnp.float32)
    if running is not None:
        rescale_BGQ = jnp.exp(running[0] - max_BGQ)
        sum_BGQ = running[1] * rescale_BGQ + sum_BGQ
        acc_BGQK = running[2] * rescale_BGQ[..., None] + acc_BGQK
    return max_BGQ, sum_BGQ, acc_BGQK


class LayerCache(NamedTuple):
    """One self-attention layer's keys and values for decoding, passed in and returned by the
    model (no mutable collection, so decoding stays a pure function of params and cache).

    Slots 0..index-1 hold the keys and values of the tokens seen so far; later slots are
    masked out. A fixed length S keeps every decoding step the same shape, so it compiles once.
    """

    key_BSGK: jax.Array
    value_BSGK: jax.Array
    index: jax.Array  # int32 scalar: the slot of the next token

    @classmethod
    def empty(cls, batch: int, length: int, n_kv_heads: int, head_dim: int, dtype: Any) -> LayerCache:
        shape = (batch, length, n_kv_heads, head_dim)
        return cls(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))

    def append(self, k_BTGK: jax.Array, v_BTGK: jax.Array) -> LayerCache:
        """Writes T new tokens at `index` (in place when the caller donates the cache)."""
        start = (0, self.index, 0, 0)
        return LayerCache(
            jax.lax.dynamic_update_slice(self.key_BSGK, k_BTGK.astype(self.key_BSGK.dtype), start),
            jax.lax.dynamic_update_slice(self.value_BSGK, v_BTGK.astype(self.value_BSGK.dtype), start),
            self.index + k_BTGK.shape[1],
        )

    def visible_mask(self, query_len: int) -> jax.Array:
        """T×S: the last `query_len` appended tokens see every slot up to their own."""
        return causal_mask(query_len, self.key_BSGK.shape[1], offset=self.index - query_len)


class CrossKV(NamedTuple):
    """One cross-attention layer's projected encoder keys and values: computed once per
    generation and reused by every decoder step."""

    key_BSGK: jax.Array
    value_BSGK: jax.Array


class MultiHeadAttention(nn.Module):
    """Projections around `attend`: self- or cross-attention, optional RoPE, grouped kv heads."""

    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    use_bias: bool = True
    dtype: Any = jnp.float32
    init_std: float = 0.02
    out_init_std: float = 0.02
    rope_theta: float | None = None
    scale: float | None = None
    causal_blocks: int = 1
    attention_impl: str = "xla"  # auto | xla | cudnn | splash (lmjax.models.attention_kernels)

    def setup(self) -> None:
        """Named projections (not inline ones), so `key_value` can run them on their own."""
        self.query = self._dense((self.n_heads, self.head_dim), "heads")
        self.key = self._dense((self.n_kv_heads, self.head_dim), "kv_heads")
        self.value = self._dense((self.n_kv_heads, self.head_dim), "kv_heads")
        self.out = Dense((self.d_model,), ("heads", "kv", "embed"), in_dims=2,
                         use_bias=self.use_bias, dtype=self.dtype,
                         kernel_init=normal(self.out_init_std))

    def _dense(self, features: tuple[int, int], heads_axis: str) -> Dense:
        return Dense(features, ("embed", heads_axis, "kv"), use_bias=self.use_bias,
                     dtype=self.dtype, kernel_init=normal(self.init_std))

    def key_value(self, context_BSD: jax.Array) -> CrossKV:
        """The keys and values of `context_BSD`, for a cross-attention that reuses them."""
        k_BSGK, v_BSGK = self._project(context_BSD, [self.key, self.value])
        names = ("batch", "length", "kv_heads", "kv")
        return CrossKV(constrain(k_BSGK, names), constrain(v_BSGK, names))

    def _self_projections(self, x_BTD: jax.Array) -> tuple[jax.Array, CrossKV]:
        """Queries, keys and values of one input; all three from one matmul unless grouped kv
        heads give keys and values another shape."""
        names = ("batch", "length", "heads", "kv")
        if self.n_kv_heads != self.n_heads:
            return constrain(self.query(x_BTD), names), self.key_value(x_BTD)
        q_BTHK, k_BTHK, v_BTHK = self._project(x_BTD, [self.query, self.key, self.value])
        kv_names = ("batch", "length", "kv_heads", "kv")
        return constrain(q_BTHK, names), CrossKV(constrain(k_BTHK, kv_names), constrain(v_BTHK, kv_names))

    def _project(self, x_BTD: jax.Array, projections: list[Dense]) -> list[jax.Array]:
        """Each projection of one input, from one matmul over their stacked kernels. Separate
        projections cost XLA a transpose and a copy each in the backward pass (on CPU the GPT-3
        Small shape's forward+backward took 8.2 s against 6.1 s fused); the parameters stay
        named (embed, heads, kv) kernels, so checkpoints and sharding rules are unchanged."""
        kernels, biases = zip(*(proj.weights(x_BTD.shape[-1:]) for proj in projections))
        w_DCGK = jnp.stack(kernels, axis=1).astype(self.dtype)
        y_BTCGK = jnp.einsum("btd,dcgk->btcgk", x_BTD, w_DCGK)
        if self.use_bias:
            y_BTCGK = y_BTCGK + jnp.stack(biases).astype(self.dtype)
        return [y_BTCGK[:, :, index] for index in range(len(projections))]

    def __call__(
        self,
        x_BTD: jax.Array,
        context_BSD: jax.Array | None = None,
        *,
        causal: bool = False,
        mask: jax.Array | None = None,
        bias_HTS: jax.Array | None = None,
        positions_BT: jax.Array | None = None,
        cache: LayerCache | None = None,
        kv: CrossKV | None = None,
    ) -> jax.Array | tuple[jax.Array, LayerCache]:
        """Attention output B×T×D; with a `cache` (causal self-attention while decoding), the
        output and the cache with this call's keys and values appended. `kv` replaces the
        projection of `context_BSD` by keys and values computed before (cross-attention)."""
        if kv is None and context_BSD is None:
            q_BTHK, kv = self._self_projections(x_BTD)
        else:
            q_BTHK = constrain(self.query(x_BTD), ("batch", "length", "heads", "kv"))
            kv = kv if kv is not None else self.key_value(context_BSD)
        k_BSGK, v_BSGK = kv
        if self.rope_theta is not None:
            q_BTHK = rope(q_BTHK, positions_BT, self.rope_theta)
            k_BSGK = rope(k_BSGK, positions_BT, self.rope_theta)
        kernel = self._kernel(q_BTHK, k_BSGK, masked=mask is not None,
                              biased=bias_HTS is not None, cached=cache is not None)
        if kernel != "xla":
            out_BTHK = kernel_attend(kernel, q_BTHK, k_BSGK, v_BSGK, causal=causal, scale=self.scale)
        elif cache is not None:
            cache = cache.append(k_BSGK, v_BSGK)
            mask_TS = cache.visible_mask(x_BTD.shape[1])
            mask = mask_TS if mask is None else mask & mask_TS
            out_BTHK = attend(q_BTHK, cache.key_BSGK, cache.value_BSGK, mask, bias_HTS, scale=self.scale)
        elif causal and mask is None and bias_HTS is None:
            out_BTHK = blocked_causal_attend(
                q_BTHK, k_BSGK, v_BSGK, self.causal_blocks, scale=self.scale
            )
        else:
            if causal:
                causal_TS = causal_mask(x_BTD.shape[1], k_BSGK.shape[1])
                mask = causal_TS if mask is None else mask & causal_TS
            out_BTHK = attend(q_BTHK, k_BSGK, v_BSGK, mask, bias_HTS, scale=self.scale)
        out_BTHK = constrain(out_BTHK, ("batch", "length", "heads", "kv"))
        y_BTD = self.out(out_BTHK)
        return y_BTD if cache is None else (y_BTD, cache)

    def _kernel(self, q_BTHK: jax.Array, k_BSGK: jax.Array, **case: bool) -> str:
        """The kernel `attention_impl` resolves to here, or xla (logged) if it cannot serve
        this case."""
        kernel = resolve_attention(self.attention_impl)
        reason = unsupported(kernel, q_BTHK, k_BSGK, **case)
        if reason is None:
            return kernel
        log_fallback(kernel, reason)
        return "xla"


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


def key_padding_mask(attention_mask_BS: jax.Array) -> jax.Array:
    """B×1×S mask hiding padded keys only, as BERT and T5 do: a padded query still attends to
    the real tokens, so no softmax row is empty and every position matches transformers."""
    return jnp.asarray(attention_mask_BS).astype(bool)[:, None, :]


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
