"""RobertaForMaskedLM -> lmjax BERT (`model.positions_skip_padding`).

RoBERTa is BERT's encoder with other names for the MLM head (`lm_head.dense`, `layer_norm`,
`decoder`, `bias`), one token type, no next-sentence head, and positions that start after
the padding index: a real token's position is padding_idx + 1 + (real tokens before it), and
padding sits at padding_idx. lmjax keeps the table from row padding_idx + 1 on, so its
positions start at 0 and `max_len` is max_position_embeddings - padding_idx - 1, and counts
real tokens from the attention mask (transformers counts the ids that are not the pad id,
the same thing wherever padding uses the pad id and real tokens do not).
"""

from __future__ import annotations

from lmjax.config import ModelConfig
from lmjax.errors import CheckpointError
from lmjax.runs.importers.hf import bert
from lmjax.runs.importers.hf.weights import Weights

MODEL_TYPE = "roberta"
PREFIX = "roberta."


def model_config(hf: dict, weights: Weights) -> ModelConfig:
    activation = hf.get("hidden_act", "gelu")
    if activation != "gelu":
        raise CheckpointError(f"RoBERTa hidden_act={activation!r} is not supported: its MLM head "
                              "always uses exact gelu, which lmjax ties to the encoder's (gelu)")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError("only RoBERTa with absolute position embeddings is supported")
    return ModelConfig(
        arch="bert", vocab_size=hf["vocab_size"], d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
        d_ff=hf["intermediate_size"], max_len=hf["max_position_embeddings"] - _first_position(hf),
        norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-12), position="learned",
        mlp="gelu_exact", use_bias=True, type_vocab_size=hf.get("type_vocab_size", 1), nsp=False,
        positions_skip_padding=True,
        tie_embeddings=not weights.has("lm_head.decoder.weight")
        or weights.same("lm_head.decoder.weight", "embeddings.word_embeddings.weight"),
    )


def _first_position(hf: dict) -> int:
    """The table row of the first real token: padding_idx + 1."""
    return int(hf.get("pad_token_id", 1)) + 1


def params(weights: Weights, cfg: ModelConfig, hf: dict) -> dict:
    d, v, first = cfg.d_model, cfg.vocab_size, _first_position(hf)
    positions = weights.get("embeddings.position_embeddings.weight", (cfg.max_len + first, d))
    tree = {
        "token_embed": {"embedding": weights.get("embeddings.word_embeddings.weight", (v, d))},
        "position_embed": {"embedding": positions[first:]},
        "type_embed": {"embedding": weights.get("embeddings.token_type_embeddings.weight",
                                                (cfg.type_vocab_size, d))},
        "embed_norm": bert.layernorm(weights, "embeddings.LayerNorm", d),
        "mlm": _mlm_head(weights, cfg),
    }
    for layer in range(cfg.n_layers):
        tree[f"layer_{layer}"] = bert.encoder_block(weights, f"encoder.layer.{layer}.", cfg)
    return tree


def _output_bias(weights: Weights) -> str:
    """The decoder's own bias, which the forward pass adds; tied to lm_head.bias (and then
    not saved) unless transformers 5 built the model with untied word embeddings."""
    return "lm_head.decoder.bias" if weights.has("lm_head.decoder.bias") else "lm_head.bias"


def _mlm_head(weights: Weights, cfg: ModelConfig) -> dict:
    d, v = cfg.d_model, cfg.vocab_size
    head = {
        "transform": bert.dense(weights, "lm_head.dense", d, d),
        "transform_norm": bert.layernorm(weights, "lm_head.layer_norm", d),
        "bias": weights.get(_output_bias(weights), (v,)),
    }
    if not cfg.tie_embeddings:
        head["decoder"] = {"kernel": weights.linear("lm_head.decoder.weight", (d,), (v,))}
    return head
