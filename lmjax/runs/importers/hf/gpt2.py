"""GPT2LMHeadModel -> lmjax GPT: configs and weights.

GPT-2 stores its projections as Conv1D weights (in, out), with query, key and value fused
in `c_attn`; lmjax keeps them as separate (embed, heads, kv) kernels.
"""

from __future__ import annotations

from lmjax.config import ModelConfig
from lmjax.errors import CheckpointError
from lmjax.runs.importers.hf.weights import Weights

MODEL_TYPE = "gpt2"
PREFIX = "transformer."  # GPT2LMHeadModel's body; GPT2Model checkpoints have none
ACTIVATIONS = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu": "gelu_exact", "relu": "relu"}


def model_config(hf: dict, weights: Weights) -> ModelConfig:
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise CheckpointError(f"GPT-2 activation_function={activation!r} is not supported: "
                              f"lmjax has {', '.join(ACTIVATIONS)}")
    if hf.get("scale_attn_by_inverse_layer_idx") or not hf.get("scale_attn_weights", True):
        raise CheckpointError("GPT-2 attention scaling other than 1/sqrt(head size) is not supported")
    d_model = hf["n_embd"]
    return ModelConfig(
        arch="gpt", vocab_size=hf["vocab_size"], d_model=d_model, n_layers=hf["n_layer"],
        n_heads=hf["n_head"], d_ff=hf.get("n_inner") or 4 * d_model, max_len=hf["n_positions"],
        norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5), position="learned",
        mlp=ACTIVATIONS[activation], use_bias=True,
        tie_embeddings=not weights.has("lm_head.weight") or weights.same("lm_head.weight", "wte.weight"),
    )


def params(weights: Weights, cfg: ModelConfig, hf: dict) -> dict:
    del hf  # the config says nothing the weights and ModelConfig do not
    d, v = cfg.d_model, cfg.vocab_size
    tree = {
        "wte": {"embedding": weights.get("wte.weight", (v, d))},
        "wpe": {"embedding": weights.get("wpe.weight", (cfg.max_len, d))},
        "ln_f": _layernorm(weights, "ln_f", d),
    }
    for layer in range(cfg.n_layers):
        tree[f"h_{layer}"] = _block(weights, f"h.{layer}.", cfg)
    if not cfg.tie_embeddings:
        tree["lm_head"] = {"kernel": weights.get("lm_head.weight", (v, d)).T}
    return tree


def _block(weights: Weights, prefix: str, cfg: ModelConfig) -> dict:
    d, h, k, f = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_ff
    qkv_kernel = weights.get(prefix + "attn.c_attn.weight", (d, 3 * h * k))
    qkv_bias = weights.get(prefix + "attn.c_attn.bias", (3 * h * k,))
    attn = {
        name: {
            "kernel": qkv_kernel[:, part * h * k:(part + 1) * h * k].reshape(d, h, k),
            "bias": qkv_bias[part * h * k:(part + 1) * h * k].reshape(h, k),
        }
        for part, name in enumerate(("query", "key", "value"))
    }
    attn["out"] = {"kernel": weights.get(prefix + "attn.c_proj.weight", (h * k, d)).reshape(h, k, d),
                   "bias": weights.get(prefix + "attn.c_proj.bias", (d,))}
    return {
        "ln_1": _layernorm(weights, prefix + "ln_1", d),
        "attn": attn,
        "ln_2": _layernorm(weights, prefix + "ln_2", d),
        "mlp": {"wi": _conv1d(weights, prefix + "mlp.c_fc", d, f),
                "wo": _conv1d(weights, prefix + "mlp.c_proj", f, d)},
    }


def _conv1d(weights: Weights, prefix: str, d_in: int, d_out: int) -> dict:
    return {"kernel": weights.get(prefix + ".weight", (d_in, d_out)),
            "bias": weights.get(prefix + ".bias", (d_out,))}


def _layernorm(weights: Weights, prefix: str, d: int) -> dict:
    return {"scale": weights.get(prefix + ".weight", (d,)), "bias": weights.get(prefix + ".bias", (d,))}
