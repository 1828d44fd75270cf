"""Supervised fine-tuning: next-token loss on response tokens only, over packed rows whose
examples do not see each other (segment ids), normalised by the response tokens of the
whole global batch (so a long response weighs by its tokens, as in pretraining)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import numpy as np

from lmjax.config import TrainConfig
from lmjax.posttrain.engine import Method, run_config, run_method
from lmjax.posttrain.examples import SFTExample
from lmjax.posttrain.packing import epoch_batches, pack, tokenize
from lmjax.posttrain.placement import Placement, trained_names
from lmjax.posttrain.sequences import masked_mean_nll
from lmjax.posttrain.template import ChatTemplate
from lmjax.posttrain.tuning import FullTuning, Tuning
from lmjax.runs.layout import PathLike
from lmjax.tokenizers import Tokenizer


def sft_rows(examples: Sequence[SFTExample], tokenizer: Tokenizer, template: ChatTemplate,
             seq_len: int) -> dict[str, np.ndarray]:
    """The examples tokenized (every prompt checked first) and packed into rows."""
    tokenized = [tokenize(tokenizer, template, ex.prompt, ex.response, seq_len) for ex in examples]
    return pack(tokenized, seq_len)


def sft_method(model: nn.Module, params: Any, rows: dict[str, np.ndarray], train: TrainConfig,
               tuning: Tuning | None = None, placement: Placement | None = None) -> Method:
    """SFT for the engine: the response tokens' mean next-token loss, weighted by their count
    (so accumulated microbatches weigh as one batch), over seeded epochs of `rows`."""
    tuning = tuning or FullTuning()
    trained = tuning.init(params)

    def loss(trained, batch):
        nll, tokens = masked_mean_nll(model, tuning.model_params(trained), batch)
        return nll, tokens, {"response_tokens": tokens}

    return Method(name="sft", trained=trained, loss=loss,
                  batches=epoch_batches(rows, train.global_batch_size, train.seed),
                  batch_shape=(train.global_batch_size, rows["inputs"].shape[1]),
                  transform=lambda base: tuning.optimizer(base, trained),
                  names=trained_names(placement, tuning, model))


def train_sft(model: nn.Module, params: Any, rows: dict[str, np.ndarray], train: TrainConfig,
              run_dir: PathLike, tuning: Tuning | None = None,
              placement: Placement | None = None) -> tuple[Any, list[dict], Any]:
    """Fine-tuned parameters (adapters merged), the logged metrics and the trained tree
    (for LoRA: {"base", "lora"}, whose adapters can be saved alone), trained as a run in
    `run_dir`; on a mesh with a `placement` (the batch size must divide over its
    data-parallel axes)."""
    tuning = tuning or FullTuning()
    method = sft_method(model, params, rows, train, tuning, placement)
    trained, result = run_method(method, run_config(model.config, train, run_dir), placement=placement)
    return tuning.merged(trained), result.records, trained
