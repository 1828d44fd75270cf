"""lmjax T5 -> T5ForConditionalGeneration, the inverse of `lmjax.runs.importers.hf.t5`.

A tied lmjax T5 scales the decoder output by d_model**-0.5 before the shared embedding
(T5 v1.0: `tie_word_embeddings=true`, which transformers reads as scale_decoder_outputs).
An untied one (v1.1) does not scale: the config says `tie_word_embeddings=false` and the file
holds `lm_head.weight` beside `shared.weight`, which transformers keeps apart when they
differ. Where they are equal (a transformers-5 v1.1 imported into lmjax) only
`shared.weight` is written, as transformers itself writes it.
"""

from __future__ import annotations

import numpy as np

from lmjax.config import ModelConfig
from lmjax.runs.exporters.tensors import flat, linear, unknown_option

HF_CLASS = "T5ForConditionalGeneration"
FEED_FORWARD = {"relu": "relu", "gelu": "gelu_new", "gelu_exact": "gelu",
                "geglu": "gated-gelu", "swiglu": "gated-silu"}  # lmjax mlp -> feed_forward_proj
DECODER_START = 0  # T5 starts decoding from the padding id, as lmjax's T5 does


def unsupported(model: ModelConfig) -> str | None:
    if model.arch != "t5":
        return f"model.arch={model.arch!r}: {HF_CLASS} is an encoder-decoder model"
    if model.position != "relative":
        return f"model.position={model.position!r}: {HF_CLASS} has relative position buckets only"
    if model.norm != "rmsnorm":
        return f"model.norm={model.norm!r}: {HF_CLASS} has RMSNorm only"
    if model.use_bias:
        return f"model.use_bias=true: {HF_CLASS} has no biases"
    if model.mlp not in FEED_FORWARD:
        return f"model.mlp={model.mlp!r}: {HF_CLASS} has {', '.join(FEED_FORWARD)}"
    if model.kv_heads != model.n_heads:
        return f"model.n_kv_heads={model.n_kv_heads} (grouped-query attention) has no {HF_CLASS} equivalent"
    return unknown_option(model, HF_CLASS)


def hf_config(model: ModelConfig) -> dict:
    return {
        "architectures": [HF_CLASS], "model_type": "t5", "vocab_size": model.vocab_size,
        "d_model": model.d_model, "d_kv": model.d_head, "d_ff": model.d_ff,
        "num_layers": model.n_layers, "num_decoder_layers": model.decoder_layers,
        "num_heads": model.n_heads, "relative_attention_num_buckets": model.relpos_buckets,
        "relative_attention_max_distance": model.relpos_max_distance,
        "layer_norm_epsilon": model.norm_eps, "feed_forward_proj": FEED_FORWARD[model.mlp],
        "tie_word_embeddings": model.tie_embeddings, "is_encoder_decoder": True,
        "decoder_start_token_id": DECODER_START, "n_positions": model.max_len,
    }


def state_dict(params: dict, model: ModelConfig) -> dict[str, np.ndarray]:
    shared = np.asarray(params["token_embed"]["embedding"], np.float32)
    tensors = {"shared.weight": shared,
               **_stack(params["encoder"], "encoder", model.n_layers, model),
               **_stack(params["decoder"], "decoder", model.decoder_layers, model)}
    if not model.tie_embeddings:
        head = linear(params["lm_head"]["kernel"])
        if not np.array_equal(head, shared):
            tensors["lm_head.weight"] = head
    return {name: np.ascontiguousarray(value, np.float32) for name, value in tensors.items()}


def _stack(stack: dict, name: str, n_layers: int, model: ModelConfig) -> dict[str, np.ndarray]:
    decoder = name == "decoder"
    tensors = {
        f"{name}.block.0.layer.0.SelfAttention.relative_attention_bias.weight":
            stack["relpos"]["embedding"],
        f"{name}.final_layer_norm.weight": flat(stack["final_norm"]["scale"]),
    }
    for layer in range(n_layers):
        block, prefix = stack[f"layer_{layer}"], f"{name}.block.{layer}.layer."
        attention = "self_attn" if decoder else "attn"
        tensors.update(_attention(block[attention], prefix + "0.SelfAttention."))
        tensors[prefix + "0.layer_norm.weight"] = flat(block[attention + "_norm"]["scale"])
        if decoder:
            tensors.update(_attention(block["cross_attn"], prefix + "1.EncDecAttention."))
            tensors[prefix + "1.layer_norm.weight"] = flat(block["cross_attn_norm"]["scale"])
        mlp = f"{prefix}{2 if decoder else 1}."
        tensors.update(_mlp(block["mlp"], mlp + "DenseReluDense.", model))
        tensors[mlp + "layer_norm.weight"] = flat(block["mlp_norm"]["scale"])
    return tensors


def _attention(attention: dict, prefix: str) -> dict[str, np.ndarray]:
    tensors = {f"{prefix}{short}.weight": linear(attention[name]["kernel"])
               for name, short in (("query", "q"), ("key", "k"), ("value", "v"))}
    tensors[prefix + "o.weight"] = linear(attention["out"]["kernel"], in_dims=2)
    return tensors


def _mlp(mlp: dict, prefix: str, model: ModelConfig) -> dict[str, np.ndarray]:
    if model.mlp in ("geglu", "swiglu"):
        return {prefix + "wi_0.weight": linear(mlp["wi"]["kernel"]),
                prefix + "wi_1.weight": linear(mlp["wi_up"]["kernel"]),
                prefix + "wo.weight": linear(mlp["wo"]["kernel"])}
    return {prefix + "wi.weight": linear(mlp["wi"]["kernel"]),
            prefix + "wo.weight": linear(mlp["wo"]["kernel"])}
