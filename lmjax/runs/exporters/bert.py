"""lmjax BERT -> BertForMaskedLM (BertForPreTraining when it has the next-sentence head),
the inverse of `lmjax.runs.importers.hf.bert`."""

from __future__ import annotations

import numpy as np

from lmjax.config import ModelConfig
from lmjax.runs.exporters.tensors import bias, flat, grouped_or_odd_heads, linear, unknown_option

HF_CLASS = "BertForMaskedLM"
WITH_NSP = "BertForPreTraining"  # the same model with BERT's pooler and next-sentence head
ACTIVATIONS = {"gelu_exact": "gelu", "gelu": "gelu_new", "relu": "relu"}  # lmjax -> BERT


def unsupported(model: ModelConfig) -> str | None:
    if model.arch != "bert":
        return f"model.arch={model.arch!r}: {HF_CLASS} is an encoder-only model"
    if model.position != "learned":
        return f"model.position={model.position!r}: {HF_CLASS} has learned positions only"
    if model.norm != "layernorm":
        return f"model.norm={model.norm!r}: {HF_CLASS} has LayerNorm only"
    if model.mlp not in ACTIVATIONS:
        return f"model.mlp={model.mlp!r}: {HF_CLASS} has an ungated MLP ({', '.join(ACTIVATIONS)})"
    return grouped_or_odd_heads(model, HF_CLASS) or unknown_option(model, HF_CLASS)


def hf_config(model: ModelConfig) -> dict:
    return {
        "architectures": [WITH_NSP if model.nsp else HF_CLASS], "model_type": "bert",
        "vocab_size": model.vocab_size, "hidden_size": model.d_model,
        "num_hidden_layers": model.n_layers, "num_attention_heads": model.n_heads,
        "intermediate_size": model.d_ff, "max_position_embeddings": model.max_len,
        "type_vocab_size": model.type_vocab_size, "hidden_act": ACTIVATIONS[model.mlp],
        "layer_norm_eps": model.norm_eps, "position_embedding_type": "absolute",
        "tie_word_embeddings": model.tie_embeddings,
    }


def state_dict(params: dict, model: ModelConfig) -> dict[str, np.ndarray]:
    d = model.d_model
    tensors = {
        "bert.embeddings.word_embeddings.weight": params["token_embed"]["embedding"],
        "bert.embeddings.position_embeddings.weight": params["position_embed"]["embedding"],
        "bert.embeddings.token_type_embeddings.weight": params["type_embed"]["embedding"],
        **_layernorm(params["embed_norm"], "bert.embeddings.LayerNorm", d),
        **_mlm_head(params["mlm"], model),
    }
    for layer in range(model.n_layers):
        tensors.update(_block(params[f"layer_{layer}"], f"bert.encoder.layer.{layer}.", model))
    if model.nsp:
        tensors.update(_dense(params["nsp"]["pooler"], "bert.pooler.dense"))
        tensors.update(_dense(params["nsp"]["classifier"], "cls.seq_relationship"))
    return {name: np.ascontiguousarray(value, np.float32) for name, value in tensors.items()}


def _block(block: dict, prefix: str, model: ModelConfig) -> dict[str, np.ndarray]:
    d, f = model.d_model, model.d_ff
    attn = block["attn"]
    tensors = {}
    for name in ("query", "key", "value"):
        tensors[f"{prefix}attention.self.{name}.weight"] = linear(attn[name]["kernel"])
        tensors[f"{prefix}attention.self.{name}.bias"] = bias(attn[name], d)
    return {
        **tensors,
        prefix + "attention.output.dense.weight": linear(attn["out"]["kernel"], in_dims=2),
        prefix + "attention.output.dense.bias": bias(attn["out"], d),
        **_layernorm(block["attn_norm"], prefix + "attention.output.LayerNorm", d),
        prefix + "intermediate.dense.weight": linear(block["mlp"]["wi"]["kernel"]),
        prefix + "intermediate.dense.bias": bias(block["mlp"]["wi"], f),
        prefix + "output.dense.weight": linear(block["mlp"]["wo"]["kernel"]),
        prefix + "output.dense.bias": bias(block["mlp"]["wo"], d),
        **_layernorm(block["mlp_norm"], prefix + "output.LayerNorm", d),
    }


def _mlm_head(head: dict, model: ModelConfig) -> dict[str, np.ndarray]:
    tensors = {
        **_dense(head["transform"], "cls.predictions.transform.dense"),
        **_layernorm(head["transform_norm"], "cls.predictions.transform.LayerNorm", model.d_model),
        "cls.predictions.bias": flat(head["bias"]),
    }
    if not model.tie_embeddings:  # an untied decoder adds its own copy of the bias
        tensors["cls.predictions.decoder.weight"] = linear(head["decoder"]["kernel"])
        tensors["cls.predictions.decoder.bias"] = flat(head["bias"])
    return tensors


def _dense(dense: dict, prefix: str) -> dict[str, np.ndarray]:
    return {prefix + ".weight": linear(dense["kernel"]), prefix + ".bias": flat(dense["bias"])}


def _layernorm(norm: dict, prefix: str, d: int) -> dict[str, np.ndarray]:
    return {prefix + ".weight": flat(norm["scale"]), prefix + ".bias": bias(norm, d)}
