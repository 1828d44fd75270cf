"""XLA flags that make training faster on CPU-only machines, applied before JAX starts.

Measured with experiments/bench_train.py (README, Performance): YNNPACK's reduce fusion with
the tree-reduction rewriter off is 5-10% faster on a 2-core x86 CPU. The rewriter matters on
GPUs and TPUs, so the flags are only added when no accelerator plugin is installed.
Set LMJAX_CPU_FLAGS=0 to keep XLA's defaults.
"""

from __future__ import annotations

import importlib.util
import os

CPU_FLAGS = (
    "--xla_cpu_experimental_ynn_fusion_type=reduce",
    "--xla_disable_hlo_passes=tree_reduction_rewriter",
)
ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu")


def accelerator_installed() -> bool:
    return any(importlib.util.find_spec(name) is not None for name in ACCELERATOR_PLUGINS)


def apply_cpu_flags() -> None:
    """Adds the CPU flags to XLA_FLAGS unless opted out, already set, or on an accelerator."""
    if os.environ.get("LMJAX_CPU_FLAGS", "1") == "0" or accelerator_installed():
        return
    current = os.environ.get("XLA_FLAGS", "")
    missing = [flag for flag in CPU_FLAGS if flag.split("=")[0] not in current]
    os.environ["XLA_FLAGS"] = " ".join([current, *missing]).strip()
