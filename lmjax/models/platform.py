"""What the JAX platform (cpu, gpu or tpu) decides: the compute dtype behind
`model.dtype=auto` and the attention kernel behind `model.attention_impl=auto`.

On GPUs and TPUs matmuls run at their full rate only in bfloat16, so `auto` computes in
bfloat16 there (parameters, optimizer state and the loss stay float32: the master weights);
on CPU bfloat16 is emulated and slower, so `auto` keeps float32.
"""

from __future__ import annotations

import jax

from lmjax.config import KERNEL_PLATFORM

ACCELERATORS = ("gpu", "tpu")
# The fused attention kernel each accelerator platform offers (`auto` picks it).
PLATFORM_KERNEL = {platform: kernel for kernel, platform in KERNEL_PLATFORM.items()}


def jax_platform() -> str:
    """JAX's default platform: cpu, gpu or tpu (ROCm and CUDA both report gpu)."""
    return jax.default_backend()


def compute_dtype_name(dtype: str, platform: str | None = None) -> str:
    """`model.dtype` as a concrete name on `platform` (default: this process's): `auto` is
    bfloat16 on accelerators, float32 on CPU."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if (platform or jax_platform()) in ACCELERATORS else "float32"


def attention_kernel(impl: str, platform: str | None = None) -> str:
    """`model.attention_impl` as a concrete kernel on `platform` (default: this process's):
    `auto` is the platform's fused kernel, or xla where there is none."""
    if impl != "auto":
        return impl
    return PLATFORM_KERNEL.get(platform or jax_platform(), "xla")
