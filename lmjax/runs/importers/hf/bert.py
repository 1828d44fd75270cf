"""BertForMaskedLM (or BertForPreTraining, whose NSP head lmjax also has) -> lmjax BERT."""

from __future__ import annotations

from lmjax.config import ModelConfig
from lmjax.errors import CheckpointError
from lmjax.runs.importers.hf.weights import Weights

MODEL_TYPE = "bert"
PREFIX = "bert."
ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "relu": "relu"}
NSP_WEIGHT = "cls.seq_relationship.weight"


def model_config(hf: dict, weights: Weights) -> ModelConfig:
    activation = hf.get("hidden_act", "gelu")
    if activation not in ACTIVATIONS:
        raise CheckpointError(f"BERT hidden_act={activation!r} is not supported: "
                              f"lmjax has {', '.join(ACTIVATIONS)}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError("only BERT with absolute position embeddings is supported")
    return ModelConfig(
        arch="bert", vocab_size=hf["vocab_size"], d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
        d_ff=hf["intermediate_size"], max_len=hf["max_position_embeddings"], norm="layernorm",
        norm_eps=hf.get("layer_norm_eps", 1e-12), position="learned", mlp=ACTIVATIONS[activation],
        use_bias=True, type_vocab_size=hf.get("type_vocab_size", 2), nsp=weights.has(NSP_WEIGHT),
        tie_embeddings=not weights.has("cls.predictions.decoder.weight")
        or weights.same("cls.predictions.decoder.weight", "embeddings.word_embeddings.weight"),
    )


def params(weights: Weights, cfg: ModelConfig, hf: dict) -> dict:
    del hf  # the config says nothing the weights and ModelConfig do not
    d, v = cfg.d_model, cfg.vocab_size
    tree = {
        "token_embed": {"embedding": weights.get("embeddings.word_embeddings.weight", (v, d))},
        "position_embed": {"embedding": weights.get("embeddings.position_embeddings.weight",
                                                    (cfg.max_len, d))},
        "type_embed": {"embedding": weights.get("embeddings.token_type_embeddings.weight",
                                                (cfg.type_vocab_size, d))},
        "embed_norm": layernorm(weights, "embeddings.LayerNorm", d),
        "mlm": _mlm_head(weights, cfg),
    }
    for layer in range(cfg.n_layers):
        tree[f"layer_{layer}"] = encoder_block(weights, f"encoder.layer.{layer}.", cfg)
    if cfg.nsp:
        tree["nsp"] = {"pooler": dense(weights, "pooler.dense", d, d),
                       "classifier": dense(weights, "cls.seq_relationship", d, 2)}
    return tree


def encoder_block(weights: Weights, prefix: str, cfg: ModelConfig) -> dict:
    d, h, k, f = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_ff
    attn = {
        name: {"kernel": weights.linear(f"{prefix}attention.self.{name}.weight", (d,), (h, k)),
               "bias": weights.vector(f"{prefix}attention.self.{name}.bias", (h, k))}
        for name in ("query", "key", "value")
    }
    attn["out"] = {"kernel": weights.linear(prefix + "attention.output.dense.weight", (h, k), (d,)),
                   "bias": weights.get(prefix + "attention.output.dense.bias", (d,))}
    return {
        "attn": attn,
        "attn_norm": layernorm(weights, prefix + "attention.output.LayerNorm", d),
        "mlp": {"wi": dense(weights, prefix + "intermediate.dense", d, f),
                "wo": dense(weights, prefix + "output.dense", f, d)},
        "mlp_norm": layernorm(weights, prefix + "output.LayerNorm", d),
    }


def _mlm_head(weights: Weights, cfg: ModelConfig) -> dict:
    d, v = cfg.d_model, cfg.vocab_size
    head = {
        "transform": dense(weights, "cls.predictions.transform.dense", d, d),
        "transform_norm": layernorm(weights, "cls.predictions.transform.LayerNorm", d),
        "bias": weights.get(_output_bias(weights, cfg), (v,)),
    }
    if not cfg.tie_embeddings:
        head["decoder"] = {"kernel": weights.linear("cls.predictions.decoder.weight", (d,), (v,))}
    return head


def _output_bias(weights: Weights, cfg: ModelConfig) -> str:
    """An untied BertForMaskedLM adds its decoder's own bias and never reads
    `cls.predictions.bias` (transformers 5 ties the two only with the embeddings)."""
    untied = "cls.predictions.decoder.bias"
    return untied if not cfg.tie_embeddings and weights.has(untied) else "cls.predictions.bias"


def dense(weights: Weights, prefix: str, d_in: int, d_out: int) -> dict:
    return {"kernel": weights.linear(prefix + ".weight", (d_in,), (d_out,)),
            "bias": weights.get(prefix + ".bias", (d_out,))}


def layernorm(weights: Weights, prefix: str, d: int) -> dict:
    return {"scale": weights.get(prefix + ".weight", (d,)), "bias": weights.get(prefix + ".bias", (d,))}
