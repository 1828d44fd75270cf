"""Hugging Face checkpoints as lmjax models: `model, params = from_pretrained(path)`.

Loads a `save_pretrained` directory of GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM,
Qwen2ForCausalLM, BertForMaskedLM (or BertForPreTraining), RobertaForMaskedLM or
T5ForConditionalGeneration into lmjax's GPT, BERT or T5, whose `apply({'params': params},
input_ids=..., ...)` then returns the transformers model's logits. Neither torch nor
transformers is needed for safetensors checkpoints (single or sharded, float32 or bfloat16).
"""

from __future__ import annotations

import pathlib
from types import ModuleType

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmjax.config import ModelConfig
from lmjax.errors import CheckpointError
from lmjax.runs.importers.hf import bert, gpt2, llama, roberta, t5
from lmjax.runs.importers.hf.weights import materialize, read_config, read_weights
from lmjax.models import build_model

FAMILIES: dict[str, ModuleType] = {
    gpt2.MODEL_TYPE: gpt2, **{name: llama for name in llama.MODEL_TYPES},
    bert.MODEL_TYPE: bert, roberta.MODEL_TYPE: roberta, t5.MODEL_TYPE: t5,
}
ARCHITECTURES = {
    "gpt2": ("GPT2LMHeadModel", "GPT2Model"),
    "llama": ("LlamaForCausalLM",),
    "mistral": ("MistralForCausalLM",),
    "qwen2": ("Qwen2ForCausalLM",),
    "bert": ("BertForMaskedLM", "BertForPreTraining"),
    "roberta": ("RobertaForMaskedLM",),
    "t5": ("T5ForConditionalGeneration", "T5WithLMHeadModel"),
}


def load(path: str | pathlib.Path) -> tuple[ModelConfig, dict]:
    """The lmjax model config and parameters of a checkpoint directory: float32 numpy arrays,
    or `Deferred` leaves read only when `np.asarray` (or `open_run`'s placement) asks."""
    directory = pathlib.Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a directory: give a save_pretrained directory")
    hf_config = read_config(directory)
    family = _family(hf_config, directory)
    weights = read_weights(directory, strip_prefix=family.PREFIX)
    model_config = family.model_config(hf_config, weights)
    return model_config, family.params(weights, model_config, hf_config)


def from_pretrained(path: str | pathlib.Path) -> tuple[nn.Module, dict]:
    """The lmjax model and its parameters (on the default device) for a checkpoint directory."""
    model_config, params = load(path)
    return build_model(model_config), jax.tree.map(jnp.asarray, materialize(params))


def _family(hf_config: dict, directory: pathlib.Path) -> ModuleType:
    model_type = hf_config.get("model_type")
    supported = ", ".join(name for names in ARCHITECTURES.values() for name in names)
    if not model_type:
        raise CheckpointError(
            f"{directory / 'config.json'} has no model_type, so it is not a transformers model "
            f"config: give a save_pretrained directory of {supported}"
        )
    if model_type not in FAMILIES:
        raise CheckpointError(
            f"{directory} holds a {model_type!r} model; lmjax imports {', '.join(FAMILIES)} "
            f"({supported})"
        )
    unsupported = set(hf_config.get("architectures") or ()) - set(ARCHITECTURES[model_type])
    if unsupported:
        raise CheckpointError(
            f"{directory} holds a {sorted(unsupported)[0]}, which lmjax does not import; "
            f"it imports {supported}"
        )
    return FAMILIES[model_type]
