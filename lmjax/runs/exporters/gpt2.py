"""lmjax GPT -> GPT2LMHeadModel, the inverse of `lmjax.runs.importers.hf.gpt2`.

GPT-2 keeps query, key and value fused in one Conv1D (`c_attn`, weights stored (in, out));
lmjax keeps them as separate (embed, heads, kv) kernels. A GPT trained without biases
(model.use_bias=false) is exported with zero biases, which GPT-2 computes identically.
"""

from __future__ import annotations

import numpy as np

from lmjax.config import ModelConfig
from lmjax.runs.exporters.tensors import bias, flat, grouped_or_odd_heads, unknown_option

HF_CLASS = "GPT2LMHeadModel"
ACTIVATIONS = {"gelu": "gelu_new", "gelu_exact": "gelu", "relu": "relu"}  # lmjax -> GPT-2


def unsupported(model: ModelConfig) -> str | None:
    if model.arch != "gpt":
        return f"model.arch={model.arch!r}: {HF_CLASS} is a decoder-only model"
    if model.position != "learned":
        return f"model.position={model.position!r}: {HF_CLASS} has learned positions only"
    if model.norm != "layernorm":
        return f"model.norm={model.norm!r}: {HF_CLASS} has LayerNorm only"
    if model.mlp not in ACTIVATIONS:
        return (f"model.mlp={model.mlp!r}: {HF_CLASS} has an ungated MLP "
                f"({', '.join(ACTIVATIONS)})")
    return grouped_or_odd_heads(model, HF_CLASS) or unknown_option(model, HF_CLASS)


def hf_config(model: ModelConfig) -> dict:
    return {
        "architectures": [HF_CLASS], "model_type": "gpt2", "vocab_size": model.vocab_size,
        "n_positions": model.max_len, "n_embd": model.d_model, "n_layer": model.n_layers,
        "n_head": model.n_heads, "n_inner": model.d_ff,
        "activation_function": ACTIVATIONS[model.mlp], "layer_norm_epsilon": model.norm_eps,
        "tie_word_embeddings": model.tie_embeddings,
    }


def state_dict(params: dict, model: ModelConfig) -> dict[str, np.ndarray]:
    tensors = {
        "transformer.wte.weight": params["wte"]["embedding"],
        "transformer.wpe.weight": params["wpe"]["embedding"],
        **_layernorm(params["ln_f"], "transformer.ln_f", model.d_model),
    }
    for layer in range(model.n_layers):
        tensors.update(_block(params[f"h_{layer}"], f"transformer.h.{layer}.", model))
    if not model.tie_embeddings:
        tensors["lm_head.weight"] = np.asarray(params["lm_head"]["kernel"]).T
    return {name: np.ascontiguousarray(value, np.float32) for name, value in tensors.items()}


def _block(block: dict, prefix: str, model: ModelConfig) -> dict[str, np.ndarray]:
    d, f = model.d_model, model.d_ff
    attn = block["attn"]
    parts = [attn[name] for name in ("query", "key", "value")]
    return {
        **_layernorm(block["ln_1"], prefix + "ln_1", d),
        prefix + "attn.c_attn.weight": np.concatenate(
            [np.asarray(part["kernel"]).reshape(d, -1) for part in parts], axis=1),
        prefix + "attn.c_attn.bias": np.concatenate([bias(part, d) for part in parts]),
        prefix + "attn.c_proj.weight": np.asarray(attn["out"]["kernel"]).reshape(-1, d),
        prefix + "attn.c_proj.bias": bias(attn["out"], d),
        **_layernorm(block["ln_2"], prefix + "ln_2", d),
        prefix + "mlp.c_fc.weight": block["mlp"]["wi"]["kernel"],
        prefix + "mlp.c_fc.bias": bias(block["mlp"]["wi"], f),
        prefix + "mlp.c_proj.weight": block["mlp"]["wo"]["kernel"],
        prefix + "mlp.c_proj.bias": bias(block["mlp"]["wo"], d),
    }


def _layernorm(norm: dict, prefix: str, d: int) -> dict[str, np.ndarray]:
    return {prefix + ".weight": flat(norm["scale"]), prefix + ".bias": bias(norm, d)}
