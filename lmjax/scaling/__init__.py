"""Counting for scaling work: parameters (total, embedding, non-embedding) and model FLOPs
computed from the architecture, both from a ModelConfig alone."""

from lmjax.scaling.flops import (
    forward_flops,
    flops_per_token_6n,
    flops_per_token_6n_attention,
    train_flops,
)
from lmjax.scaling.params import ParamCounts, param_counts

__all__ = [
    "ParamCounts",
    "flops_per_token_6n",
    "forward_flops",
    "flops_per_token_6n_attention",
    "param_counts",
    "train_flops",
]
