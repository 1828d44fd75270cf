"""Autoregressive decoding: sampling rules, the GPT generator (prompts of any lengths in one
batch) and the T5 generator (encoder once, cached self- and cross-attention), behind
`make_generator`, which the `lmjax generate` command calls."""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from lmjax.decoding.gpt import Generator
from lmjax.decoding.sampling import Sampling, filter_logits, sample
from lmjax.decoding.t5 import T5Generator
from lmjax.errors import ConfigError


def make_generator(
    model: nn.Module,
    params: Any,
    sampling: Sampling = Sampling(),
    vocab_size: int | None = None,
    decoder_start_id: int = 0,
) -> Generator | T5Generator:
    """The generator for `model`'s architecture; each has `.generate(prompts, max_new_tokens,
    seed=0, stop_ids=(), use_cache=True) -> list[list[int]]`. For GPT the new ids continue each
    prompt; for T5 the prompts are encoder inputs and the ids are the decoder's after
    `decoder_start_id`. Encoder-only models cannot generate."""
    arch = model.config.arch
    if arch == "gpt":
        return Generator(model, params, sampling, vocab_size)
    if arch == "t5":
        return T5Generator(model, params, sampling, vocab_size, decoder_start_id)
    raise ConfigError(
        f"a {arch} model cannot generate text: it is encoder-only; generate with a gpt or t5 model"
    )


__all__ = ["Generator", "Sampling", "T5Generator", "filter_logits", "make_generator", "sample"]
