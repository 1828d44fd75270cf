"""LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM -> lmjax GPT, Llama variant.

The three share one layout: RMSNorm, RoPE, a SwiGLU MLP (gate_proj, up_proj, down_proj) and
grouped-query attention; Qwen2 adds biases to q/k/v only (`model.qkv_bias`), Llama may have
`attention_bias` and `mlp_bias` (`model.use_bias` when both). transformers rotates the two
halves of each head (rotate_half) where lmjax rotates interleaved pairs as Meta's Llama does,
so the rows of q_proj and k_proj (and their biases) are reordered from halves to pairs, the
inverse of transformers' own Meta-to-HF conversion; attention scores do not change.

Mistral's sliding window (and Qwen2's, when used) cannot change anything within the window,
so `max_len` is capped at it and every sequence lmjax runs stays exact. Parameters come back
as `Deferred` leaves, read from the files only when placed (`open_run`).
"""

from __future__ import annotations

import numpy as np

from lmjax.config import ModelConfig
from lmjax.errors import CheckpointError
from lmjax.runs.importers.hf.weights import Deferred, Weights

MODEL_TYPES = ("llama", "mistral", "qwen2")
PREFIX = "model."  # the body of *ForCausalLM; lm_head.weight sits beside it
ROPE_TYPES = {"default": "none", "linear": "linear", "llama3": "llama3"}
DEFAULT_THETA = 10000.0


def model_config(hf: dict, weights: Weights) -> ModelConfig:
    if hf.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"{hf['model_type']} hidden_act={hf['hidden_act']!r} is not supported: "
                              "lmjax's SwiGLU uses silu")
    d_model, heads = hf["hidden_size"], hf["num_attention_heads"]
    return ModelConfig(
        arch="gpt", vocab_size=hf["vocab_size"], d_model=d_model, n_layers=hf["num_hidden_layers"],
        n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or d_model // heads, d_ff=hf["intermediate_size"],
        max_len=context_length(hf), norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6),
        position="rope", mlp="swiglu", **_biases(hf, weights),
        tie_embeddings=_tied(hf, weights),
        **rope_options(hf),
    )


def _tied(hf: dict, weights: Weights) -> bool:
    """No lm_head.weight, or one the config ties and that equals the embedding (compared only
    then: reading both tables of a large vocabulary costs)."""
    if not weights.has("lm_head.weight"):
        return True
    return bool(hf.get("tie_word_embeddings")) and weights.same("lm_head.weight", "embed_tokens.weight")


def rope_options(hf: dict) -> dict:
    """model.rope_theta and rope_scaling*, from transformers 5's `rope_parameters` or the
    older `rope_theta` + `rope_scaling`."""
    found = hf.get("rope_parameters") or {**(hf.get("rope_scaling") or {}),
                                            "rope_theta": hf.get("rope_theta", DEFAULT_THETA)}
    kind = found.get("rope_type") or found.get("type") or "default"
    if kind not in ROPE_TYPES:
        raise CheckpointError(f"rope_scaling type {kind!r} of this {hf['model_type']} checkpoint is "
                              f"not supported: lmjax computes {', '.join(ROPE_TYPES)}")
    options = {"rope_theta": float(found.get("rope_theta", DEFAULT_THETA)),
               "rope_scaling": ROPE_TYPES[kind]}
    if kind != "default":
        options["rope_scaling_factor"] = float(found["factor"])
    if kind == "llama3":
        options.update(rope_low_freq_factor=float(found["low_freq_factor"]),
                       rope_high_freq_factor=float(found["high_freq_factor"]),
                       rope_original_max_len=int(found["original_max_position_embeddings"]))
    return options


def context_length(hf: dict) -> int:
    """max_position_embeddings, capped at the sliding window where one is used."""
    length = hf["max_position_embeddings"]
    window = hf.get("sliding_window")
    used = {"mistral": True, "qwen2": hf.get("use_sliding_window", False)}.get(hf["model_type"], False)
    used = used or "sliding_attention" in (hf.get("layer_types") or ())
    return min(length, window) if used and window else length


def _biases(hf: dict, weights: Weights) -> dict[str, bool]:
    """model.use_bias (Llama's attention_bias and mlp_bias) or model.qkv_bias (Qwen2; also a
    Llama with attention_bias whose o_proj biases are all zero, as lmjax exports Qwen2)."""
    if hf["model_type"] == "qwen2":
        return {"use_bias": False, "qkv_bias": True}
    attention, mlp = bool(hf.get("attention_bias")), bool(hf.get("mlp_bias"))
    if attention == mlp:
        return {"use_bias": attention, "qkv_bias": False}
    if attention and _zero_out_biases(hf, weights):
        return {"use_bias": False, "qkv_bias": True}
    raise CheckpointError(f"{hf['model_type']} attention_bias={attention} with mlp_bias={mlp} is not "
                          "supported: lmjax has biases everywhere (use_bias), on q/k/v only, or none")


def _zero_out_biases(hf: dict, weights: Weights) -> bool:
    names = [f"layers.{layer}.self_attn.o_proj.bias" for layer in range(hf["num_hidden_layers"])]
    return all(weights.has(name) and not np.any(weights.get(name, (hf["hidden_size"],)))
               for name in names)


def params(weights: Weights, cfg: ModelConfig, hf: dict) -> dict:
    del hf  # the config says nothing the weights and ModelConfig do not
    d, v = cfg.d_model, cfg.vocab_size
    tree = {"wte": {"embedding": weights.deferred("embed_tokens.weight", (v, d), (v, d))},
            "ln_f": {"scale": weights.deferred("norm.weight", (d,), (d,))}}
    for layer in range(cfg.n_layers):
        tree[f"h_{layer}"] = _block(weights, f"layers.{layer}.", cfg)
    if not cfg.tie_embeddings:
        tree["lm_head"] = {"kernel": _linear(weights, "lm_head", (d,), (v,))}
    return tree


def _block(weights: Weights, prefix: str, cfg: ModelConfig) -> dict:
    d, f = cfg.d_model, cfg.d_ff
    attn = {name: _projection(weights, f"{prefix}self_attn.{short}_proj", heads, cfg, rotated)
            for name, short, heads, rotated in (("query", "q", cfg.n_heads, True),
                                                ("key", "k", cfg.kv_heads, True),
                                                ("value", "v", cfg.kv_heads, False))}
    attn["out"] = _dense(weights, prefix + "self_attn.o_proj", (cfg.n_heads, cfg.d_head), (d,), cfg)
    mlp = {name: _dense(weights, f"{prefix}mlp.{hf_name}", (d_in,), (d_out,), cfg)
           for name, hf_name, d_in, d_out in (("wi", "gate_proj", d, f), ("wi_up", "up_proj", d, f),
                                              ("wo", "down_proj", f, d))}
    return {"ln_1": {"scale": weights.deferred(prefix + "input_layernorm.weight", (d,), (d,))},
            "attn": attn,
            "ln_2": {"scale": weights.deferred(prefix + "post_attention_layernorm.weight", (d,), (d,))},
            "mlp": mlp}


def _projection(weights: Weights, name: str, heads: int, cfg: ModelConfig, rotated: bool) -> dict:
    """q, k or v: kernel (embed, heads, head size) and, where the model has them, the bias;
    q and k reordered from transformers' halves to lmjax's interleaved RoPE pairs."""
    d, k = cfg.d_model, cfg.d_head

    def kernel(weight_OI: np.ndarray) -> np.ndarray:
        rows = halves_to_pairs(weight_OI, heads) if rotated else weight_OI
        return rows.T.reshape(d, heads, k)

    def bias(bias_O: np.ndarray) -> np.ndarray:
        return (halves_to_pairs(bias_O, heads) if rotated else bias_O).reshape(heads, k)

    tree = {"kernel": weights.deferred(name + ".weight", (heads * k, d), (d, heads, k), kernel)}
    if cfg.use_bias or cfg.qkv_bias:
        tree["bias"] = weights.deferred(name + ".bias", (heads * k,), (heads, k), bias)
    return tree


def halves_to_pairs(rows: np.ndarray, heads: int) -> np.ndarray:
    """Rows (heads·K, ...) of a rotate_half projection in interleaved order: row h·K + 2i + j
    of the result is row h·K + j·K/2 + i of the input. `pairs_to_halves` undoes it."""
    grouped = rows.reshape(heads, 2, -1, *rows.shape[1:])
    return np.swapaxes(grouped, 1, 2).reshape(rows.shape)


def pairs_to_halves(rows: np.ndarray, heads: int) -> np.ndarray:
    grouped = rows.reshape(heads, -1, 2, *rows.shape[1:])
    return np.swapaxes(grouped, 1, 2).reshape(rows.shape)


def _dense(weights: Weights, name: str, in_shape: tuple, out_shape: tuple, cfg: ModelConfig) -> dict:
    tree = {"kernel": _linear(weights, name, in_shape, out_shape)}
    if cfg.use_bias:
        size = int(np.prod(out_shape))
        tree["bias"] = weights.deferred(name + ".bias", (size,), out_shape,
                                        lambda value: value.reshape(out_shape))
    return tree


def _linear(weights: Weights, name: str, in_shape: tuple, out_shape: tuple) -> Deferred:
    """A torch Linear weight (out, in) as a kernel (*in_shape, *out_shape), read when placed."""
    stored = (int(np.prod(out_shape)), int(np.prod(in_shape)))
    weight_name = name if name.endswith(".weight") else name + ".weight"
    return weights.deferred(weight_name, stored, (*in_shape, *out_shape),
                            lambda value: value.T.reshape(*in_shape, *out_shape))
