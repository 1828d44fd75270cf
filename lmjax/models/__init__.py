"""Model families behind one constructor; each is a flax.linen module mapping ids to logits."""

from __future__ import annotations

import flax.linen as nn

from lmjax.config import ModelConfig
from lmjax.errors import ConfigError
from lmjax.models.gpt import GPT


def build_model(config: ModelConfig) -> nn.Module:
    if config.arch == "gpt":
        return GPT(config)
    raise ConfigError(f"model.arch={config.arch!r} is not available yet: use gpt")


__all__ = ["GPT", "build_model"]
