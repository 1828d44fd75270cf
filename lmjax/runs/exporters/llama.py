"""lmjax GPT (Llama variant) -> LlamaForCausalLM: the inverse of `importers.hf.llama`.

LlamaForCausalLM expresses a GPT with RMSNorm, RoPE (plain, linear or llama3 scaling) and a
SwiGLU MLP, grouped kv heads, tied or untied output, an explicit head_dim, and either no
biases or biases everywhere (`model.use_bias`: attention_bias and mlp_bias). Biases on q/k/v
only (`model.qkv_bias`, Qwen2's layout) are written as attention_bias with a zero o_proj
bias, the same function, which the importer reads back as q/k/v-only biases. RoPE pairs are
reordered from lmjax's interleaved layout to transformers' halves (`pairs_to_halves`).
The module interface every exporter implements: HF_CLASS, unsupported, hf_config, state_dict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmjax.config import ModelConfig
from lmjax.models import unstack_layers
from lmjax.runs.exporters.tensors import unknown_option
from lmjax.runs.importers.hf.llama import pairs_to_halves

HF_CLASS = "LlamaForCausalLM"
REQUIRED = {"arch": ("gpt", "a decoder (model.arch=gpt)"), "norm": ("rmsnorm", "only RMSNorm"),
            "position": ("rope", "only RoPE"), "mlp": ("swiglu", "only a SwiGLU MLP")}
# The Llama-only options hf_config writes; any other non-default option (µP's multipliers,
# say) has no Llama equivalent and is refused by name.
LLAMA_OPTIONS = frozenset({"rope_scaling", "rope_scaling_factor", "rope_low_freq_factor",
                           "rope_high_freq_factor", "rope_original_max_len", "qkv_bias"})


def unsupported(model: ModelConfig) -> str | None:
    """None if LlamaForCausalLM computes this model, else the option that it cannot."""
    for field, (needed, what) in REQUIRED.items():
        value = getattr(model, field)
        if value != needed:
            return f"model.{field}={value}: {HF_CLASS} has {what}"
    return unknown_option(model, HF_CLASS, LLAMA_OPTIONS)


def hf_config(model: ModelConfig) -> dict[str, Any]:
    """config.json's contents (the writer adds torch_dtype and the tokenizer's special ids)."""
    return {
        "architectures": [HF_CLASS], "model_type": "llama", "vocab_size": model.vocab_size,
        "hidden_size": model.d_model, "intermediate_size": model.d_ff,
        "num_hidden_layers": model.n_layers, "num_attention_heads": model.n_heads,
        "num_key_value_heads": model.kv_heads, "head_dim": model.d_head,
        "max_position_embeddings": model.max_len, "rms_norm_eps": model.norm_eps,
        "hidden_act": "silu", "rope_theta": model.rope_theta, "rope_scaling": _rope_scaling(model),
        "attention_bias": model.use_bias or model.qkv_bias, "mlp_bias": model.use_bias,
        "tie_word_embeddings": model.tie_embeddings,
    }


def _rope_scaling(model: ModelConfig) -> dict[str, Any] | None:
    if model.rope_scaling == "none":
        return None
    scaling = {"rope_type": model.rope_scaling, "factor": model.rope_scaling_factor}
    if model.rope_scaling == "llama3":
        scaling.update(low_freq_factor=model.rope_low_freq_factor,
                       high_freq_factor=model.rope_high_freq_factor,
                       original_max_position_embeddings=model.rope_original_max_len)
    return scaling


def state_dict(params: dict, model: ModelConfig) -> dict[str, np.ndarray]:
    """float32 tensors under transformers' names (torch Linear weights are (out, in))."""
    params = unstack_layers(params, model)
    tensors = {"model.embed_tokens.weight": _array(params["wte"]["embedding"]),
               "model.norm.weight": _array(params["ln_f"]["scale"])}
    for layer in range(model.n_layers):
        tensors.update(_layer(params[f"h_{layer}"], f"model.layers.{layer}.", model))
    if not model.tie_embeddings:
        tensors["lm_head.weight"] = _array(params["lm_head"]["kernel"]).T
    return {name: np.ascontiguousarray(value) for name, value in tensors.items()}


def _layer(block: dict, prefix: str, model: ModelConfig) -> dict[str, np.ndarray]:
    attn, d = block["attn"], model.d_model
    tensors = {prefix + "input_layernorm.weight": _array(block["ln_1"]["scale"]),
               prefix + "post_attention_layernorm.weight": _array(block["ln_2"]["scale"])}
    for name, short, heads, rotated in (("query", "q", model.n_heads, True),
                                        ("key", "k", model.kv_heads, True),
                                        ("value", "v", model.kv_heads, False)):
        weight = _array(attn[name]["kernel"]).reshape(d, -1).T
        tensors[f"{prefix}self_attn.{short}_proj.weight"] = (
            pairs_to_halves(weight, heads) if rotated else weight)
        if model.use_bias or model.qkv_bias:
            bias = _array(attn[name]["bias"]).reshape(-1)
            tensors[f"{prefix}self_attn.{short}_proj.bias"] = (
                pairs_to_halves(bias, heads) if rotated else bias)
    tensors[prefix + "self_attn.o_proj.weight"] = _array(attn["out"]["kernel"]).reshape(-1, d).T
    if model.use_bias or model.qkv_bias:
        tensors[prefix + "self_attn.o_proj.bias"] = (
            _array(attn["out"]["bias"]) if model.use_bias else np.zeros(d, np.float32))
    for name, hf_name in (("wi", "gate_proj"), ("wi_up", "up_proj"), ("wo", "down_proj")):
        tensors[f"{prefix}mlp.{hf_name}.weight"] = _array(block["mlp"][name]["kernel"]).T
        if model.use_bias:
            tensors[f"{prefix}mlp.{hf_name}.bias"] = _array(block["mlp"][name]["bias"])
    return tensors


def _array(value: Any) -> np.ndarray:
    return np.asarray(value, np.float32)
