"""Supervised fine-tuning: next-token loss on response tokens only, over packed rows whose
examples do not see each other (segment ids), normalised by the response tokens of the
whole global batch (so a long response weighs by its tokens, as in pretraining)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import numpy as np

from lmjax.posttrain.examples import SFTExample
from lmjax.posttrain.packing import epoch_batches, pack, tokenize
from lmjax.posttrain.placement import Placement, trained_names
from lmjax.posttrain.sequences import masked_mean_nll
from lmjax.posttrain.template import ChatTemplate
from lmjax.posttrain.trainer import FitConfig, FullTuning, Tuning, fit
from lmjax.tokenizers import Tokenizer


def sft_rows(examples: Sequence[SFTExample], tokenizer: Tokenizer, template: ChatTemplate,
             seq_len: int) -> dict[str, np.ndarray]:
    """The examples tokenized (every prompt checked first) and packed into rows."""
    tokenized = [tokenize(tokenizer, template, ex.prompt, ex.response, seq_len) for ex in examples]
    return pack(tokenized, seq_len)


def train_sft(model: nn.Module, params: Any, rows: dict[str, np.ndarray], config: FitConfig,
              tuning: Tuning | None = None,
              on_log: Callable[[dict], None] | None = None,
              placement: Placement | None = None) -> tuple[Any, list[dict], Any]:
    """Fine-tuned parameters (adapters merged), the logged metrics and the trained tree
    (for LoRA: {"base", "lora"}, whose adapters can be saved alone); on a mesh with a
    `placement` (the batch size must divide over its data-parallel axes)."""
    tuning = tuning or FullTuning()
    trained = tuning.init(params)
    names = trained_names(placement, tuning, model)

    def loss_fn(trained, batch):
        nll, tokens = masked_mean_nll(model, tuning.model_params(trained), batch)
        return nll, {"response_tokens": tokens}

    optimizer = tuning.optimizer(config.optimizer(), trained)
    batches = epoch_batches(rows, config.batch_size, config.seed)
    trained, history = fit(loss_fn, trained, batches, config, optimizer, on_log, placement, names)
    return tuning.merged(trained), history, trained
