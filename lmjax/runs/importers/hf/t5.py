"""T5ForConditionalGeneration (v1.0 and v1.1) -> lmjax T5.

The output layer comes in three forms: tied to `shared` and fed the decoder output scaled by
d_model**-0.5 (v1.0: lmjax's tied T5), a separate `lm_head` (v1.1), or, as transformers 5
builds v1.1 models, tied but unscaled. The last two load as an untied lmjax head holding the
output matrix (scaled into the kernel where a separate head is still scaled).
"""

from __future__ import annotations

from lmjax.config import ModelConfig
from lmjax.errors import CheckpointError
from lmjax.runs.importers.hf.weights import Weights

MODEL_TYPE = "t5"
PREFIX = ""
# (is gated, dense_act_fn) -> lmjax mlp
ACTIVATIONS = {(False, "relu"): "relu", (True, "gelu_new"): "geglu", (True, "silu"): "swiglu",
               (False, "gelu_new"): "gelu", (False, "gelu"): "gelu_exact"}
DEFAULT_MAX_LEN = 512  # relative positions have no maximum; this only bounds data.seq_len


def model_config(hf: dict, weights: Weights) -> ModelConfig:
    proj = hf.get("feed_forward_proj", "relu")
    gated = proj.startswith("gated-")
    activation = hf.get("dense_act_fn") or ("gelu_new" if proj == "gated-gelu" else proj.split("-")[-1])
    if (gated, activation) not in ACTIVATIONS:
        raise CheckpointError(f"T5 feed_forward_proj={proj!r} is not supported: use relu or gated-gelu")
    return ModelConfig(
        arch="t5", vocab_size=hf["vocab_size"], d_model=hf["d_model"], n_layers=hf["num_layers"],
        n_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"], n_heads=hf["num_heads"],
        head_dim=hf["d_kv"], d_ff=hf["d_ff"], max_len=hf.get("n_positions") or DEFAULT_MAX_LEN,
        norm="rmsnorm", norm_eps=hf.get("layer_norm_epsilon", 1e-6), position="relative",
        mlp=ACTIVATIONS[gated, activation], use_bias=False,
        relpos_buckets=hf.get("relative_attention_num_buckets", 32),
        relpos_max_distance=hf.get("relative_attention_max_distance", 128),
        tie_embeddings=_scales_output(hf) and not _separate_head(weights),
    )


def params(weights: Weights, cfg: ModelConfig, hf: dict) -> dict:
    d, v = cfg.d_model, cfg.vocab_size
    tree = {
        "token_embed": {"embedding": weights.get("shared.weight", (v, d))},
        "encoder": _stack(weights, "encoder", cfg.n_layers, cfg),
        "decoder": _stack(weights, "decoder", cfg.decoder_layers, cfg),
    }
    if not cfg.tie_embeddings:
        name = "lm_head.weight" if _separate_head(weights) else "shared.weight"
        scale = d**-0.5 if _scales_output(hf) else 1.0
        tree["lm_head"] = {"kernel": weights.linear(name, (d,), (v,)) * scale}
    return tree


def _scales_output(hf: dict) -> bool:
    """transformers 5 records `scale_decoder_outputs`; older configs say `tie_word_embeddings`."""
    return bool(hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True)))


def _separate_head(weights: Weights) -> bool:
    return weights.has("lm_head.weight") and not weights.same("lm_head.weight", "shared.weight")


def _stack(weights: Weights, stack: str, n_layers: int, cfg: ModelConfig) -> dict:
    decoder = stack == "decoder"
    tree = {
        "relpos": {"embedding": weights.get(
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            (cfg.relpos_buckets, cfg.n_heads))},
        "final_norm": {"scale": weights.get(f"{stack}.final_layer_norm.weight", (cfg.d_model,))},
    }
    for layer in range(n_layers):
        prefix = f"{stack}.block.{layer}.layer."
        block = {"mlp": _mlp(weights, f"{prefix}{2 if decoder else 1}.DenseReluDense.", cfg),
                 "mlp_norm": _norm(weights, f"{prefix}{2 if decoder else 1}.layer_norm", cfg)}
        attention = "self_attn" if decoder else "attn"
        block[attention] = _attention(weights, prefix + "0.SelfAttention.", cfg)
        block[attention + "_norm"] = _norm(weights, prefix + "0.layer_norm", cfg)
        if decoder:
            block["cross_attn"] = _attention(weights, prefix + "1.EncDecAttention.", cfg)
            block["cross_attn_norm"] = _norm(weights, prefix + "1.layer_norm", cfg)
        tree[f"layer_{layer}"] = block
    return tree


def _attention(weights: Weights, prefix: str, cfg: ModelConfig) -> dict:
    d, h, k = cfg.d_model, cfg.n_heads, cfg.d_head
    tree = {name: {"kernel": weights.linear(f"{prefix}{short}.weight", (d,), (h, k))}
            for name, short in (("query", "q"), ("key", "k"), ("value", "v"))}
    tree["out"] = {"kernel": weights.linear(prefix + "o.weight", (h, k), (d,))}
    return tree


def _mlp(weights: Weights, prefix: str, cfg: ModelConfig) -> dict:
    d, f = cfg.d_model, cfg.d_ff
    tree = {"wo": {"kernel": weights.linear(prefix + "wo.weight", (f,), (d,))}}
    if cfg.mlp in ("geglu", "swiglu"):
        tree["wi"] = {"kernel": weights.linear(prefix + "wi_0.weight", (d,), (f,))}
        tree["wi_up"] = {"kernel": weights.linear(prefix + "wi_1.weight", (d,), (f,))}
    else:
        tree["wi"] = {"kernel": weights.linear(prefix + "wi.weight", (d,), (f,))}
    return tree


def _norm(weights: Weights, prefix: str, cfg: ModelConfig) -> dict:
    return {"scale": weights.get(prefix + ".weight", (cfg.d_model,))}
