"""The hardware side of MFU: a measured matmul peak per device and for the whole job.

The model side, FLOPs per step from the architecture, is `lmjax.scaling.flops`.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from lmjax.config import ModelConfig


def largest_matmul_size(model: ModelConfig, cap: int = 2048) -> int:
    return min(max(model.d_model, model.d_ff, model.vocab_size), cap)


def measure_matmul_peak(size: int, repeats: int = 5, dtype=jnp.float32) -> float:
    """FLOP/s of the best of `repeats` size×size×size matmuls on one device."""
    device = jax.devices()[0]
    a = jax.device_put(jnp.ones((size, size), dtype), device)
    b = jax.device_put(jnp.ones((size, size), dtype), device)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def system_peak(per_device_peak: float) -> float:
    """Peak FLOP/s of the whole job. Simulated CPU devices share one host's cores, so a CPU
    host contributes one device's measured peak; accelerators contribute one per device."""
    if jax.devices()[0].platform == "cpu":
        return per_device_peak * jax.process_count()
    return per_device_peak * jax.device_count()
