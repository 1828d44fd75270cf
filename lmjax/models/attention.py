"""Attention, the one entry point for it: masks, the XLA attention algorithms, the decoding
cache and `MultiHeadAttention`, the layer GPT, BERT and T5 call.

Three XLA algorithms compute the same softmax attention: `attend` scores every query against
every key (any mask, T5's bias, the cache); `query_blocked_causal_attend` splits causal
queries into blocks that skip the fully masked keys; `tiled_causal_attend` scores tiles of
queries × keys with an online softmax, as FlashAttention does. `blocked_causal_attend` picks
one of them for `model.attention_blocks`. The fused accelerator kernels (cuDNN, splash)
live in `lmjax.models.attention_kernels`; `MultiHeadAttention` picks one per call from
`model.attention_impl` and falls back here for the cases a kernel cannot serve. Shape
suffixes as in `lmjax.models.layers`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmjax.models.attention_kernels import kernel_attend, log_fallback, unsupported
from lmjax.models.layers import Dense, RopeScaling, constrain, normal, rope
from lmjax.models.platform import attention_kernel

NEG_INF = -1e9
# Causal blocks of this many query rows or more run tiled (`blocked_causal_attend`).
TILED_MIN_ROWS = 64
# The tile size, in queries and keys, of the eval scorer's causal attention
# (`lmjax.eval.scorers.CausalScorer`); figures in docs/performance.md.
ATTENTION_TILE = 256


def causal_mask(query_len: int, key_len: int, offset: int = 0) -> jax.Array:
    """True where query position i (shifted by `offset`) may attend to key position j <= i."""
    q = jnp.arange(query_len)[:, None] + offset
    k = jnp.arange(key_len)[None, :]
    return k <= q


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
    """Causal self-attention as `model.attention_blocks` asks for it: one block (or a length
    the blocks do not divide) is full attention; blocks of `TILED_MIN_ROWS` queries or more
    run as tiles (`tiled_causal_attend`), smaller ones as query blocks
    (`query_blocked_causal_attend`): tiles pay off on long rows, query blocks on short ones
    (figures in docs/performance.md). All three give the same result."""
    q_len = q_BTHK.shape[1]
    if blocks <= 1 or q_len % blocks:
        return attend(q_BTHK, k_BSGK, v_BSGK, causal_mask(q_len, q_len), scale=scale)
    if q_len // blocks >= TILED_MIN_ROWS:
        return tiled_causal_attend(q_BTHK, k_BSGK, v_BSGK, blocks, scale=scale)
    return query_blocked_causal_attend(q_BTHK, k_BSGK, v_BSGK, blocks, scale=scale)


def query_blocked_causal_attend(q_BTHK, k_BSGK, v_BSGK, blocks: int, scale: float | None = None):
    """Causal self-attention in `blocks` query blocks, each attending only to keys up to its
    end, which skips the fully masked upper blocks (faster on CPU than full attention)."""
    q_len = q_BTHK.shape[1]
    if blocks <= 1 or q_len % blocks:
        return attend(q_BTHK, k_BSGK, v_BSGK, causal_mask(q_len, q_len), scale=scale)
    size = q_len // blocks
    outputs = []
    for block in range(blocks):
        end = (block + 1) * size
        mask = causal_mask(size, end, offset=block * size)
        outputs.append(
            attend(q_BTHK[:, block * size:end], k_BSGK[:, :end], v_BSGK[:, :end], mask, scale=scale)
        )
    return jnp.concatenate(outputs, axis=1)


def tiled_causal_attend(q_BTHK, k_BSGK, v_BSGK, tiles: int, scale: float | None = None):
    """Causal self-attention over `tiles`×`tiles` blocks of queries and keys with a running
    (online) softmax, as FlashAttention computes it: only blocks on or below the diagonal
    are scored (the pairs `blocked_causal_attend` scores), and each block's scores are small
    enough to stay in cache, which makes long causal rows faster on CPU than query blocks
    (docs/performance.md). Grouped kv heads: the R query heads sharing a kv head are scored
    as R·t query rows against it."""
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
    rope_scaling: RopeScaling | None = None
    qkv_bias: bool | None = None  # None: as use_bias; True with use_bias=False: Qwen2's layout
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

    @property
    def _qkv_bias(self) -> bool:
        return self.use_bias if self.qkv_bias is None else self.qkv_bias

    def _dense(self, features: tuple[int, int], heads_axis: str) -> Dense:
        return Dense(features, ("embed", heads_axis, "kv"), use_bias=self._qkv_bias,
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
        projections cost XLA a transpose and a copy each in the backward pass, which slowed
        training on CPU (docs/performance.md); the parameters stay named (embed, heads, kv)
        kernels, so checkpoints and sharding rules are unchanged."""
        kernels, biases = zip(*(proj.weights(x_BTD.shape[-1:]) for proj in projections))
        w_DCGK = jnp.stack(kernels, axis=1).astype(self.dtype)
        y_BTCGK = jnp.einsum("btd,dcgk->btcgk", x_BTD, w_DCGK)
        if self._qkv_bias:
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
            q_BTHK = rope(q_BTHK, positions_BT, self.rope_theta, self.rope_scaling)
            k_BSGK = rope(k_BSGK, positions_BT, self.rope_theta, self.rope_scaling)
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
        kernel = attention_kernel(self.attention_impl)
        reason = unsupported(kernel, q_BTHK, k_BSGK, **case)
        if reason is None:
            return kernel
        log_fallback(kernel, reason)
        return "xla"


def key_padding_mask(attention_mask_BS: jax.Array) -> jax.Array:
    """B×1×S mask hiding padded keys only, as BERT and T5 do: a padded query still attends to
    the real tokens, so no softmax row is empty and every position matches transformers."""
    return jnp.asarray(attention_mask_BS).astype(bool)[:, None, :]
