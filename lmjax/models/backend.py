"""What the JAX backend decides: the compute dtype behind `model.dtype=auto` and the attention
kernel behind `model.attention_impl=auto`.

On GPUs and TPUs matmuls run at their full rate only in bfloat16, so `auto` computes in
bfloat16 there (parameters, optimizer state and the loss stay float32: the master weights);
on CPU bfloat16 is emulated and slower, so `auto` keeps float32.
"""

from __future__ import annotations

import jax

from lmjax.config import KERNEL_BACKEND

ACCELERATORS = ("gpu", "tpu")
# The fused attention kernel each accelerator backend offers (`auto` picks it).
BACKEND_KERNEL = {backend: kernel for kernel, backend in KERNEL_BACKEND.items()}


def backend() -> str:
    """JAX's default backend: cpu, gpu or tpu (ROCm and CUDA both report gpu)."""
    return jax.default_backend()


def resolve_dtype(dtype: str, on: str | None = None) -> str:
    """`model.dtype` as a concrete name: `auto` is bfloat16 on accelerators, float32 on CPU."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if (on or backend()) in ACCELERATORS else "float32"


def resolve_attention(impl: str, on: str | None = None) -> str:
    """`model.attention_impl` as a concrete kernel: `auto` is the backend's fused kernel, or
    xla where there is none."""
    if impl != "auto":
        return impl
    return BACKEND_KERNEL.get(on or backend(), "xla")
