"""Model families behind one constructor; each is a flax.linen module mapping ids to logits."""

from __future__ import annotations

import flax.linen as nn

from lmjax.config import ModelConfig
from lmjax.errors import ConfigError
from lmjax.models.bert import BERT
from lmjax.models.gpt import GPT
from lmjax.models.scan import stack_layers, unstack_layers
from lmjax.models.t5 import T5

MODELS: dict[str, type[nn.Module]] = {"gpt": GPT, "bert": BERT, "t5": T5}


def build_model(config: ModelConfig) -> nn.Module:
    if config.arch not in MODELS:
        raise ConfigError(f"model.arch={config.arch!r} is not one of {', '.join(MODELS)}")
    return MODELS[config.arch](config)


__all__ = ["BERT", "GPT", "MODELS", "T5", "build_model", "stack_layers", "unstack_layers"]
