"""int8 weight-only quantization with one scale per output channel, as a parameters transform.

Every kernel (2-D or more) becomes a `QTensor`: int8 values q = round(w / s) clipped to
[-127, 127] and a float32 scale s = max|w| / 127 taken over the kernel's input axes, so each
output channel (and each layer of a scanned stack) keeps its own range and the rounding error
of every weight is at most s / 2. Norm scales and biases stay float32: they are tiny and
sensitive. Embedding tables are quantized only on request (`embeddings=True`), one scale per
row (per token, which is also per output channel of a tied output layer): in a small model
like stories260K the table is a large share of the weights and of the logits' precision.

Which axes are inputs comes from the parameters' logical names: lmjax kernels are
(*inputs, *outputs), after a leading `layers` axis under `model.scan_layers`, and only an
attention output projection contracts two axes (`heads`, `kv`). `Dequantized(model)` runs a
model on quantized parameters, dequantizing inside its (jitted) call, so int8 values are what
the decoder keeps in memory between steps.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.config import ModelConfig
from lmjax.errors import ConfigError
from lmjax.posttrain.placement import logical_names
from lmjax.posttrain.prune import is_prunable

QMAX = 127


@flax.struct.dataclass
class QTensor:
    """An int8 kernel and its float32 scales (1 on the input axes, so they broadcast)."""

    values: jax.Array
    scale: jax.Array

    def dequantize(self) -> jax.Array:
        return self.values.astype(jnp.float32) * self.scale


def reduced_axes(names: tuple[str, ...], kind: str) -> tuple[int, ...]:
    """The axes one scale covers: a kernel's input axes, or an embedding row's `embed` axis."""
    if kind == "embedding":
        return (names.index("embed"),)
    first = 1 if names[0] == "layers" else 0
    n_inputs = 2 if names[first:first + 2] == ("heads", "kv") else 1
    return tuple(range(first, first + n_inputs))


def quantize_array(w: Any, axes: tuple[int, ...]) -> QTensor:
    """Symmetric int8 of `w` with one scale per slice over `axes` (scale 1 for an all-zero
    slice). Computed on the host with numpy: it runs once per weight, and eager JAX would
    compile a kernel per shape for it."""
    w = np.asarray(w, np.float32)
    amax = np.max(np.abs(w), axis=axes, keepdims=True)
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    values = np.clip(np.round(w / scale), -QMAX, QMAX).astype(np.int8)
    return QTensor(values, scale)


def quantize(params: Any, model_config: ModelConfig, *, embeddings: bool = False) -> Any:
    """`params` with every kernel (and with `embeddings`, every embedding table) as a QTensor."""
    _check_float(params)
    names = logical_names(model_config)
    if jax.tree.structure(names, is_leaf=_is_names) != jax.tree.structure(params):
        raise ConfigError("the parameters do not belong to the given model config (their names or "
                          "layout differ): pass the config the parameters were trained or imported with")

    def convert(path: tuple, w: jax.Array, leaf_names: tuple[str, ...]) -> Any:
        if is_prunable(path, w, embeddings):  # the same weights pruning may zero
            return quantize_array(w, reduced_axes(leaf_names, path[-1].key))
        return w

    return jax.tree_util.tree_map_with_path(convert, params, names)


def dequantize(params: Any) -> Any:
    """Float32 parameters from a quantized tree (float leaves pass through)."""
    return jax.tree.map(lambda leaf: leaf.dequantize() if isinstance(leaf, QTensor) else leaf,
                        params, is_leaf=lambda node: isinstance(node, QTensor))


def size_bytes(params: Any) -> int:
    """Bytes the parameters occupy (int8 values count one byte, scales four)."""
    return sum(int(leaf.size) * leaf.dtype.itemsize for leaf in jax.tree.leaves(params))


class Dequantized:
    """A model that takes quantized parameters: `apply` dequantizes them inside the call, so
    under `jax.jit` (the decoder, the scorers) the int8 values are the stored weights."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.config = model.config

    def apply(self, variables: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return self.model.apply({**variables, "params": dequantize(variables["params"])},
                                *args, **kwargs)


def _is_names(node: Any) -> bool:
    return isinstance(node, tuple)


def _check_float(params: Any) -> None:
    """Only a float parameters tree can be quantized (not ids, not an already quantized tree)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    if not leaves:
        raise ConfigError("there are no parameters to quantize: pass the model's parameters tree")
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ConfigError(
                f"cannot quantize {jax.tree_util.keystr(path)} of dtype {dtype}: quantize takes "
                "float parameters (is this tree already quantized?)"
            )
