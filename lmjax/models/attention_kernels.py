"""Fused attention kernels behind `model.attention_impl`: cuDNN flash attention on NVIDIA GPUs
(`jax.nn.dot_product_attention(implementation="cudnn")`) and Pallas splash attention on TPUs
(`jax.experimental.pallas.ops.tpu.splash_attention`). `xla` is the einsum path,
`lmjax.models.attention.attend`, which serves every case.

A kernel serves the training case it was built for: attention with no additive bias and no
mask beyond causality, outside decoding. `unsupported` names what it cannot serve; the layer
then runs the XLA path and logs the reason once, so a config that asks for a kernel still
evaluates padded batches and generates with a cache.
"""

from __future__ import annotations

import functools
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from lmjax.models.platform import jax_platform

logger = logging.getLogger(__name__)

CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)
CUDNN_MAX_HEAD_DIM = 128  # cuDNN's flash attention on Ampere and Hopper; multiples of 8
SPLASH_LANES = 128  # TPU vector lanes: splash's sequence blocks are multiples of this
SPLASH_BLOCK = 512  # block size MaxText uses for splash attention on every TPU generation


def unsupported(
    kernel: str, q_BTHK: jax.Array, k_BSGK: jax.Array, *, masked: bool, biased: bool, cached: bool
) -> str | None:
    """Why `kernel` cannot compute this attention (None when it can)."""
    if kernel == "xla":
        return None
    if cached:
        return "decoding with a key/value cache"
    if biased:
        return "an additive attention bias (T5's relative positions)"
    if masked:
        return "a padding or packed-segment mask"
    head_dim = q_BTHK.shape[-1]
    if kernel == "cudnn" and q_BTHK.dtype not in CUDNN_DTYPES:
        return f"{q_BTHK.dtype} inputs (cuDNN flash attention takes bfloat16 or float16)"
    if kernel == "cudnn" and (head_dim > CUDNN_MAX_HEAD_DIM or head_dim % 8):
        return f"head size {head_dim} (cuDNN takes multiples of 8 up to {CUDNN_MAX_HEAD_DIM})"
    lengths = (q_BTHK.shape[1], k_BSGK.shape[1])
    if kernel == "splash" and any(length % SPLASH_LANES for length in lengths):
        return f"sequence lengths {lengths} (splash attention takes multiples of {SPLASH_LANES})"
    return None


@functools.cache
def log_fallback(kernel: str, reason: str) -> None:
    """Logs, once per kernel and reason, that the XLA path runs instead of `kernel`."""
    logger.warning("model.attention_impl=%s cannot serve %s: this attention runs on the XLA path",
                   kernel, reason)


def kernel_attend(kernel: str, q_BTHK: jax.Array, k_BSGK: jax.Array, v_BSGK: jax.Array, *,
                  causal: bool, scale: float | None) -> jax.Array:
    """B×T×H×K attention output of `kernel` (cudnn or splash), for a case it serves.
    Splash runs in Pallas's interpreter off TPU, which is slow but exact (tests use it)."""
    if kernel == "cudnn":
        return cudnn_attend(q_BTHK, k_BSGK, v_BSGK, causal=causal, scale=scale)
    return splash_attend(q_BTHK, k_BSGK, v_BSGK, causal=causal, scale=scale,
                         interpret=jax_platform() != "tpu")


def cudnn_attend(q_BTHK: jax.Array, k_BSGK: jax.Array, v_BSGK: jax.Array, *, causal: bool,
                 scale: float | None, implementation: str = "cudnn") -> jax.Array:
    """cuDNN flash attention: takes lmjax's B×T×H×K layout and grouped kv heads as they are.
    `implementation="xla"` runs the same call through XLA, which is how CPU tests check it."""
    return jax.nn.dot_product_attention(q_BTHK, k_BSGK, v_BSGK, scale=scale, is_causal=causal,
                                        implementation=implementation)


def splash_attend(q_BTHK: jax.Array, k_BSGK: jax.Array, v_BSGK: jax.Array, *, causal: bool,
                  scale: float | None, interpret: bool = False) -> jax.Array:
    """Pallas splash attention, per device under `shard_map` when a mesh is set (as MaxText
    calls it): the kernel sees whole sequences of its shard's examples and heads, so batch
    and heads may be sharded but not the sequence. The kernel does not scale scores, so the
    queries are scaled first."""
    scale = q_BTHK.shape[-1] ** -0.5 if scale is None else scale
    q_BHTK, k_BGSK, v_BGSK = (jnp.swapaxes(x, 1, 2) for x in (q_BTHK * scale, k_BSGK, v_BSGK))
    run = functools.partial(_splash_per_device, causal=causal, interpret=interpret)
    if not jax.sharding.get_abstract_mesh().empty:
        q_spec, kv_spec = _batch_heads_spec("heads"), _batch_heads_spec("kv_heads")
        run = jax.shard_map(run, in_specs=(q_spec, kv_spec, kv_spec), out_specs=q_spec,
                            check_vma=False)
    return jnp.swapaxes(run(q_BHTK, k_BGSK, v_BGSK), 1, 2)


def _batch_heads_spec(heads: str) -> PartitionSpec:
    """B×H×T×K split as the axis rules split batch and `heads`; sequence and head size whole
    on every device (a sequence-sharding rule is overridden: the kernel needs whole rows)."""
    batch_axes, head_axes = nn.logical_to_mesh_axes(("batch", heads))
    return PartitionSpec(batch_axes, head_axes, None, None)


def _splash_per_device(q_BHTK: jax.Array, k_BGSK: jax.Array, v_BGSK: jax.Array, *, causal: bool,
                       interpret: bool) -> jax.Array:
    """The splash kernel for this device's heads and lengths, mapped over its examples
    (imported here: Pallas's TPU modules take 0.4 s to import, for TPU runs only)."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as splash,
        splash_attention_mask as splash_mask,
    )

    heads, q_len, kv_len = q_BHTK.shape[1], q_BHTK.shape[2], k_BGSK.shape[2]
    head_mask = (splash_mask.CausalMask if causal else splash_mask.FullMask)((q_len, kv_len))
    q_block, kv_block = min(SPLASH_BLOCK, q_len), min(SPLASH_BLOCK, kv_len)
    blocks = splash.BlockSizes(
        block_q=q_block, block_kv=kv_block, block_kv_compute=kv_block,
        block_q_dkv=q_block, block_kv_dkv=kv_block, block_kv_dkv_compute=kv_block,
        block_q_dq=q_block, block_kv_dq=kv_block,
    )
    kernel = splash.make_splash_mha(
        mask=splash_mask.MultiHeadMask([head_mask] * heads), head_shards=1, q_seq_shards=1,
        block_sizes=blocks, interpret=interpret,
    )
    return jax.vmap(kernel)(q_BHTK, k_BGSK, v_BGSK)
