"""Unstructured magnitude pruning: zero the smallest-magnitude weights of every kernel.

`scope="global"` ranks the magnitudes of all prunable weights together, so layers whose
weights are small lose more of them; `scope="layer"` zeroes the same share of every kernel.
Prunable are the kernels (2-D or more) and, with `embeddings=True`, the embedding tables;
norm scales and biases are never pruned. Exactly round(sparsity · n) weights are zeroed
(ties in magnitude broken by position, with a stable sort), so the sparsity asked for is the
sparsity obtained whatever the weights. The result is an ordinary float parameters tree.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from lmjax.errors import ConfigError

SCOPES = ("global", "layer")


def is_prunable(path: tuple, leaf: Any, embeddings: bool = False) -> bool:
    """Kernels of 2 or more dimensions, and embedding tables when asked."""
    kind = path[-1].key
    return kind == "kernel" and np.ndim(leaf) >= 2 or kind == "embedding" and embeddings


def prune(params: Any, sparsity: float, scope: str = "global", *, embeddings: bool = False) -> Any:
    """`params` with the share `sparsity` of prunable weights (smallest |w|) set to zero."""
    check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ConfigError(f"pruning scope {scope!r} is unknown: use one of {', '.join(SCOPES)}")
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    arrays = [np.array(leaf, np.float32) for _, leaf in leaves]  # copies, zeroed in place
    chosen = [i for i, (path, _) in enumerate(leaves) if is_prunable(path, arrays[i], embeddings)]
    if not chosen:
        raise ConfigError("the parameters hold no kernel to prune: pass a model's parameters tree")
    groups = [chosen] if scope == "global" else [[i] for i in chosen]
    for group in groups:
        _zero_smallest([arrays[i] for i in group], sparsity)
    return jax.tree.unflatten(treedef, arrays)


def check_sparsity(sparsity: float) -> None:
    if not 0 <= sparsity < 1:
        raise ConfigError(f"sparsity {sparsity} must lie in [0, 1): the share of prunable weights set to zero")


def _zero_smallest(arrays: list[np.ndarray], sparsity: float) -> None:
    """Zeroes, in place, the round(sparsity · n) smallest magnitudes over all of `arrays`."""
    magnitudes = np.concatenate([np.abs(a).reshape(-1) for a in arrays])
    n_zero = int(round(sparsity * magnitudes.size))
    drop = np.zeros(magnitudes.size, bool)
    drop[np.argsort(magnitudes, kind="stable")[:n_zero]] = True
    start = 0
    for array in arrays:
        array.reshape(-1)[drop[start:start + array.size]] = 0.0
        start += array.size


def sparsity_of(params: Any, *, embeddings: bool = False) -> float:
    """The share of prunable weights that are exactly zero."""
    leaves = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
              if is_prunable(path, leaf, embeddings)]
    zeros = sum(int(np.sum(np.asarray(leaf) == 0)) for leaf in leaves)
    return zeros / sum(int(np.size(leaf)) for leaf in leaves)
