"""XLA flags that make training faster on CPU-only machines, applied before JAX starts.

Measured with experiments/bench_train.py (README, Performance): YNNPACK's reduce fusion with
the tree-reduction rewriter off is 5-10% faster on a 2-core x86 CPU. The rewriter matters on
GPUs and TPUs, so the flags are only added when no accelerator plugin is installed.
Set LMJAX_CPU_FLAGS=0 to keep XLA's defaults.

`import lmjax` applies them, so `lmjax train` and `lmjax.train.train(config)` from Python run
with the same flags. XLA reads XLA_FLAGS once, when JAX initialises its backend: a program
that used JAX before importing lmjax keeps its own flags, and `warn_if_not_applied` (called by
the trainer) says so once, since its losses will then differ bitwise from `lmjax train`'s.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

CPU_FLAGS = (
    "--xla_cpu_experimental_ynn_fusion_type=reduce",
    "--xla_disable_hlo_passes=tree_reduction_rewriter",
)
ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu")

_state = {"late": False, "warned": False}


def accelerator_installed() -> bool:
    return any(importlib.util.find_spec(name) is not None for name in ACCELERATOR_PLUGINS)


def wanted() -> bool:
    """Whether this machine should run with the CPU flags (not opted out, no accelerator)."""
    return os.environ.get("LMJAX_CPU_FLAGS", "1") != "0" and not accelerator_installed()


def apply_cpu_flags() -> None:
    """Adds the CPU flags to XLA_FLAGS unless opted out, already set, or on an accelerator;
    remembers whether JAX's backend had already started (then the flags came too late)."""
    if not wanted():
        return
    current = os.environ.get("XLA_FLAGS", "")
    missing = [flag for flag in CPU_FLAGS if flag.split("=")[0] not in current]
    if not missing:
        return
    os.environ["XLA_FLAGS"] = " ".join([current, *missing]).strip()
    _state["late"] = _backend_started()


def _backend_started() -> bool:
    import sys

    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def applied() -> bool:
    """Whether the running backend uses the CPU flags (False when they are not wanted)."""
    return wanted() and not _state["late"]


def warn_if_not_applied() -> None:
    """Warns once when the flags were wanted but JAX had started before lmjax set them."""
    if wanted() and _state["late"] and not _state["warned"]:
        _state["warned"] = True
        warnings.warn(
            "JAX was initialised before lmjax was imported, so lmjax's CPU XLA flags "
            f"({' '.join(CPU_FLAGS)}) are not in effect: losses will differ bitwise from "
            "`lmjax train`; import lmjax before using JAX, or set LMJAX_CPU_FLAGS=0 for both",
            stacklevel=3,
        )
