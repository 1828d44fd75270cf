"""The reward model: the decoder with a scalar head on its final hidden state, trained with
the Bradley–Terry loss −log σ(r(chosen) − r(rejected)) on preference pairs; its accuracy is
the share of held-out pairs it orders correctly.

What the head reads is set by the head's own entries, so every user of a saved head (PPO's
`reward_model_fn`, `lmjax posttrain ppo --reward`) scores the same way: "w" reads the hidden
state of the row's last input token (InstructGPT), "w_mean" the mean hidden state over the
row's positions up to that token; a head may hold both, and "b" is the bias."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.config import TrainConfig
from lmjax.errors import ConfigError
from lmjax.posttrain.engine import Method, run_config, run_method
from lmjax.posttrain.dpo import side
from lmjax.posttrain.heads import apply_head, init_head
from lmjax.posttrain.packing import epoch_batches
from lmjax.posttrain.sequences import logits_and_hidden, score_in_batches
from lmjax.runs.layout import PathLike


READS = ("last", "mean", "last+mean")


def init_reward_model(params: Any, d_model: int, reads: str = "last") -> dict[str, Any]:
    """{"backbone": the decoder's parameters (e.g. the SFT model's), "head": a zero head}
    reading the last token's hidden state ("last"), the mean hidden state up to it ("mean")
    or both ("last+mean")."""
    if reads not in READS:
        raise ConfigError(f"reads={reads!r}: the reward head reads one of {', '.join(READS)}")
    head = init_head(d_model)
    if "mean" in reads:
        head["w_mean"] = jnp.zeros((d_model,), jnp.float32)
        if reads == "mean":
            del head["w"]
    return {"backbone": params, "head": head}


def rewards(model: nn.Module, reward_params: dict, rows: dict[str, jax.Array]) -> jax.Array:
    """One scalar per row: the head on the hidden state of the row's last input token and/or
    on the mean hidden state of the row's positions up to it."""
    _, hidden_BTD = logits_and_hidden(model, reward_params["backbone"], rows["inputs"])
    head = reward_params["head"]
    score_B = jnp.broadcast_to(head["b"], hidden_BTD.shape[:1])
    if "w" in head:
        last_BD = jnp.take_along_axis(hidden_BTD, rows["last"][:, None, None], axis=1)[:, 0]
        score_B = apply_head(head, last_BD[:, None])[:, 0]
    if "w_mean" in head:
        seen_BT = (jnp.arange(hidden_BTD.shape[1])[None] <= rows["last"][:, None]).astype(hidden_BTD.dtype)
        mean_BD = (hidden_BTD * seen_BT[..., None]).sum(1) / seen_BT.sum(1, keepdims=True)
        score_B = score_B + mean_BD @ head["w_mean"]
    return score_B


def bradley_terry_loss(chosen: jax.Array, rejected: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    margin = chosen - rejected
    return -jnp.mean(jax.nn.log_sigmoid(margin)), {"accuracy": jnp.mean(margin > 0),
                                                   "margin": jnp.mean(margin)}


def reward_method(model: nn.Module, reward_params: dict, rows: dict[str, np.ndarray],
                  train: TrainConfig, held_out: dict[str, np.ndarray] | None = None) -> Method:
    """The reward model for the engine: Bradley–Terry on pair rows (`dpo.pair_rows`), weight
    the pairs; evaluated (at the end) by its accuracy on `held_out` pair rows, if given."""
    def loss(params, batch):
        chosen = rewards(model, params, side(batch, "chosen"))
        mean, metrics = bradley_terry_loss(chosen, rewards(model, params, side(batch, "rejected")))
        return mean, chosen.shape[0], metrics

    def evaluate(params) -> dict[str, float]:
        return {} if held_out is None else {"held_out_accuracy": pair_accuracy(model, params, held_out)}

    return Method(name="rm", trained=reward_params, loss=loss,
                  batches=epoch_batches(rows, train.global_batch_size, train.seed),
                  batch_shape=(train.global_batch_size, rows["chosen_inputs"].shape[1]), forward_passes=2,
                  evaluate=evaluate)


def train_reward_model(model: nn.Module, reward_params: dict, rows: dict[str, np.ndarray],
                       train: TrainConfig, run_dir: PathLike) -> tuple[dict, list[dict]]:
    """The reward model trained on pair rows (`lmjax.posttrain.dpo.pair_rows`) as a run in `run_dir`."""
    trained, result = run_method(reward_method(model, reward_params, rows, train),
                                 run_config(model.config, train, run_dir))
    return trained, result.records


def pair_accuracy(model: nn.Module, reward_params: dict, rows: dict[str, np.ndarray],
                  batch_size: int = 64) -> float:
    """Share of pairs whose chosen response gets the higher reward."""
    score = jax.jit(lambda batch: rewards(model, reward_params, batch))
    chosen, rejected = (score_in_batches(score, side(rows, name), batch_size) for name in ("chosen", "rejected"))
    return float(np.mean(chosen > rejected))
