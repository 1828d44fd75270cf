"""Shared pieces of the exporters: which ModelConfig options an HF class can express, and
lmjax kernels turned into torch's (out, in) Linear weights.

Every exporter lists the options its class expresses; an option this module does not know
(one added to ModelConfig after the exporter was written) is refused unless it has its
default value, so a new architecture knob can never be dropped silently on export.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np

from lmjax.config import ModelConfig

# Options that change no parameter and no output (how lmjax computes, not what).
COMPUTE_OPTIONS = frozenset({"preset", "dtype", "remat", "scan_layers", "attention_blocks",
                             "attention_impl", "loss_chunks"})
# Every option of ModelConfig when the exporters were written; each exporter checks those
# that matter to its class.
ARCHITECTURE_OPTIONS = frozenset({
    "arch", "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_len", "norm",
    "norm_eps", "position", "rope_theta", "mlp", "use_bias", "tie_embeddings", "head_dim",
    "n_decoder_layers", "type_vocab_size", "nsp", "relpos_buckets", "relpos_max_distance",
})


def unknown_option(model: ModelConfig, hf_class: str, known: Iterable[str] = ()) -> str | None:
    """A reason naming the first option outside the known ones that is not at its default."""
    allowed = COMPUTE_OPTIONS | ARCHITECTURE_OPTIONS | set(known)
    for field in dataclasses.fields(model):
        if field.name in allowed:
            continue
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        value = getattr(model, field.name)
        if value != default:
            return f"model.{field.name}={value!r} has no {hf_class} equivalent"
    return None


def grouped_or_odd_heads(model: ModelConfig, hf_class: str) -> str | None:
    """Classes whose head size is hidden size / heads and whose key/value heads are all heads."""
    if model.kv_heads != model.n_heads:
        return (f"model.n_kv_heads={model.n_kv_heads} (grouped-query attention) has no {hf_class} "
                "equivalent")
    if model.d_model % model.n_heads or model.d_head != model.d_model // model.n_heads:
        return (f"model.head_dim={model.d_head} differs from d_model / n_heads; {hf_class} "
                "derives its head size from them")
    return None


def linear(kernel: np.ndarray, in_dims: int = 1) -> np.ndarray:
    """A kernel (*in, *out) as a torch Linear weight (out, in): the importer's inverse."""
    kernel = np.asarray(kernel, np.float32)
    n_in = math.prod(kernel.shape[:in_dims])
    return np.ascontiguousarray(kernel.reshape(n_in, -1).T)


def flat(vector: np.ndarray) -> np.ndarray:
    """A bias or scale of any shape (heads × head size) as torch's one-dimensional tensor."""
    return np.asarray(vector, np.float32).reshape(-1)


def bias(tree: dict, size: int) -> np.ndarray:
    """A layer's bias, or zeros where lmjax trained it without one (model.use_bias=false): the
    classes with biases express a bias-free layer exactly that way."""
    return flat(tree["bias"]) if "bias" in tree else np.zeros(size, np.float32)
