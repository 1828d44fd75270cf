"""Tiny models and the stories260K tokenizer for the post-training tests."""

from __future__ import annotations

import os
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmjax.config import ModelConfig
from lmjax.models import build_model
from lmjax.tokenizers import SentencePieceTokenizer


def tiny_config(**overrides) -> ModelConfig:
    """A Llama-shaped decoder small enough to train in a second."""
    fields = dict(arch="gpt", vocab_size=512, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=64,
                  max_len=64, norm="rmsnorm", position="rope", mlp="swiglu", use_bias=False)
    return ModelConfig(**{**fields, **overrides})


def tiny_model(seed: int = 0, **overrides):
    config = tiny_config(**overrides)
    model = build_model(config)
    params = model.init(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"]
    return model, nn.meta.unbox(params)


def stories_tokenizer() -> SentencePieceTokenizer:
    path = pathlib.Path(os.environ["LMJAX_DATA_DIR"]) / "stories260K" / "tok512.model"
    return SentencePieceTokenizer.from_file(str(path))
