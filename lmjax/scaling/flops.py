"""Model FLOPs from the architecture: 2·m·n·k for every matmul the forward pass runs.

`forward_flops` counts, for the shapes of one batch of model inputs: the query, key, value
and output projections with the real head size and key/value heads; the attention scores
and the probability-weighted values (query-key pairs × heads × head size, each 2 FLOPs per
multiply-add); the MLP (three matrices when gated); T5's cross-attention, whose key and
value projections run over the encoder tokens in every decoder layer; the output head only
at the positions where it runs (BERT's masked positions, after its transform dense). Not
counted: embedding lookups, norms, activations, softmax, biases, the loss and the
optimizer, which are small beside the matmuls at realistic widths.

Causal attention is counted as the model computes it: a full T×T score matrix, masked
afterwards, unless `model.attention_blocks` = b > 1 divides T and no `attention_mask` is
given, in which case each of the b query blocks scores only the keys up to its end,
T²·(b+1)/(2b) pairs in all.

`train_flops` is 3 × forward: the backward pass runs two matmuls (one for the input's
gradient, one for the weight's) for each forward one. Rematerialisation adds forward work
that these counts leave out, as MFU conventionally does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmjax.config import ModelConfig
from lmjax.models.layers import GATED


def forward_flops(model_config: ModelConfig, input_shapes: Mapping[str, Any]) -> float:
    """FLOPs of one forward pass over a batch whose model inputs have `input_shapes`.

    Keys are the names objectives pass to the model: `input_ids` (B, T) for GPT and BERT,
    BERT's optional `masked_positions` (B, P), T5's `input_ids` (B, S) and
    `decoder_input_ids` (B, T). Values are shapes or arrays (their `.shape` is used), so
    `objective.model_inputs(batch)` can be passed as is; other keys are ignored.
    """
    shapes = {name: tuple(getattr(value, "shape", value)) for name, value in input_shapes.items()}
    counter = {"gpt": _gpt_forward, "bert": _bert_forward, "t5": _t5_forward}[model_config.arch]
    return float(counter(model_config, shapes))


def train_flops(model_config: ModelConfig, input_shapes: Mapping[str, Any]) -> float:
    """FLOPs of one training step's forward and backward pass: 3 × `forward_flops`."""
    return 3.0 * forward_flops(model_config, input_shapes)


def flops_per_token_6n(n_params: float) -> float:
    """Training FLOPs per token ≈ 6N (Kaplan et al. 2020, eq. 2.2 with C = 6NBS): 2N forward,
    4N backward, attention over the context ignored. Kaplan's N excludes the embeddings
    (`ParamCounts.non_embedding`); Chinchilla-style budgets use the total."""
    return 6.0 * n_params


def flops_per_token_6n_attention(n_params: float, n_layers: int, d_attn: int, seq_len: int) -> float:
    """Training FLOPs per token with the attention term: 6N + 12·L·d_attn·T (Chowdhery et al.
    2022, PaLM appendix B; d_attn = heads × head size). The 12 counts scores and values,
    forward and backward, over the full T keys; Kaplan et al. (2020, Table 1) count only the
    scores, 6N + 6·L·d_attn·T."""
    return 6.0 * n_params + 12.0 * n_layers * d_attn * seq_len


def _attention(cfg: ModelConfig, batch: int, queries: int, keys: int, pairs_per_sequence: float) -> float:
    """One attention layer: projections of `queries` and `keys` tokens per sequence, and the
    scores and values over `pairs_per_sequence` query-key pairs."""
    q_and_out = 2 * 2 * queries * cfg.d_model * cfg.n_heads * cfg.d_head
    k_and_v = 2 * 2 * keys * cfg.d_model * cfg.kv_heads * cfg.d_head
    scores_and_values = 2 * 2 * pairs_per_sequence * cfg.n_heads * cfg.d_head
    return batch * (q_and_out + k_and_v + scores_and_values)


def _mlp(cfg: ModelConfig, tokens: int) -> float:
    matrices = 3 if cfg.mlp in GATED else 2
    return 2 * matrices * tokens * cfg.d_model * cfg.d_ff


def _head(cfg: ModelConfig, tokens: int) -> float:
    return 2 * tokens * cfg.d_model * cfg.vocab_size


def _causal_pairs(length: int, blocks: int) -> float:
    """Query-key pairs causal self-attention scores: T² in full, fewer when blocked."""
    if blocks <= 1 or length % blocks:
        return float(length * length)
    return length * length * (blocks + 1) / (2 * blocks)


def _batch_length(shapes: dict[str, tuple[int, ...]], name: str) -> tuple[int, int]:
    if name not in shapes or len(shapes[name]) != 2:
        raise ValueError(f"input_shapes needs {name!r} as (batch, length); got {shapes}")
    batch, length = shapes[name]
    return batch, length


def _gpt_forward(cfg: ModelConfig, shapes: dict[str, tuple[int, ...]]) -> float:
    batch, length = _batch_length(shapes, "input_ids")
    # A padding mask sends attention down the masked full-score path, never the blocked one.
    blocks = 1 if "attention_mask" in shapes else cfg.attention_blocks
    pairs = _causal_pairs(length, blocks)
    layer = _attention(cfg, batch, length, length, pairs) + _mlp(cfg, batch * length)
    return cfg.n_layers * layer + _head(cfg, batch * length)


def _bert_forward(cfg: ModelConfig, shapes: dict[str, tuple[int, ...]]) -> float:
    batch, length = _batch_length(shapes, "input_ids")
    predicted = shapes["masked_positions"][1] if "masked_positions" in shapes else length
    layer = _attention(cfg, batch, length, length, length * length) + _mlp(cfg, batch * length)
    transform = 2 * batch * predicted * cfg.d_model * cfg.d_model
    nsp = 2 * batch * (cfg.d_model * cfg.d_model + cfg.d_model * 2) if cfg.nsp else 0
    return cfg.n_layers * layer + transform + _head(cfg, batch * predicted) + nsp


def _t5_forward(cfg: ModelConfig, shapes: dict[str, tuple[int, ...]]) -> float:
    batch, source = _batch_length(shapes, "input_ids")
    _, target = _batch_length(shapes, "decoder_input_ids")
    encoder_layer = (_attention(cfg, batch, source, source, source * source)
                     + _mlp(cfg, batch * source))
    decoder_layer = (_attention(cfg, batch, target, target, target * target)
                     + _attention(cfg, batch, target, source, target * source)
                     + _mlp(cfg, batch * target))
    return (cfg.n_layers * encoder_layer + cfg.decoder_layers * decoder_layer
            + _head(cfg, batch * target))

