"""The reward model: the decoder with a scalar head read at the last token of prompt and
response, trained with the Bradley–Terry loss −log σ(r(chosen) − r(rejected)) on
preference pairs; its accuracy is the share of held-out pairs it orders correctly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.posttrain.dpo import side
from lmjax.posttrain.heads import apply_head, init_head
from lmjax.posttrain.packing import epoch_batches
from lmjax.posttrain.sequences import logits_and_hidden, score_in_batches
from lmjax.posttrain.trainer import FitConfig, fit


def init_reward_model(params: Any, d_model: int) -> dict[str, Any]:
    """{"backbone": the decoder's parameters (e.g. the SFT model's), "head": a zero head}."""
    return {"backbone": params, "head": init_head(d_model)}


def rewards(model: nn.Module, reward_params: dict, rows: dict[str, jax.Array]) -> jax.Array:
    """One scalar per row: the head on the hidden state of the row's last input token."""
    _, hidden_BTD = logits_and_hidden(model, reward_params["backbone"], rows["inputs"])
    last_BD = jnp.take_along_axis(hidden_BTD, rows["last"][:, None, None], axis=1)[:, 0]
    return apply_head(reward_params["head"], last_BD[:, None])[:, 0]


def bradley_terry_loss(chosen: jax.Array, rejected: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    margin = chosen - rejected
    return -jnp.mean(jax.nn.log_sigmoid(margin)), {"accuracy": jnp.mean(margin > 0),
                                                   "margin": jnp.mean(margin)}


def train_reward_model(model: nn.Module, reward_params: dict, rows: dict[str, np.ndarray],
                       config: FitConfig,
                       on_log: Callable[[dict], None] | None = None) -> tuple[dict, list[dict]]:
    """The reward model trained on pair rows (`lmjax.posttrain.dpo.pair_rows`)."""
    def loss_fn(params, batch):
        return bradley_terry_loss(rewards(model, params, side(batch, "chosen")),
                                  rewards(model, params, side(batch, "rejected")))

    return fit(loss_fn, reward_params, epoch_batches(rows, config.batch_size, config.seed),
               config, config.optimizer(), on_log)


def pair_accuracy(model: nn.Module, reward_params: dict, rows: dict[str, np.ndarray],
                  batch_size: int = 64) -> float:
    """Share of pairs whose chosen response gets the higher reward."""
    score = jax.jit(lambda batch: rewards(model, reward_params, batch))
    chosen, rejected = (score_in_batches(score, side(rows, name), batch_size) for name in ("chosen", "rejected"))
    return float(np.mean(chosen > rejected))
