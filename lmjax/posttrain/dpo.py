"""Direct preference optimisation (Rafailov et al. 2023) and IPO (Azar et al. 2023).

With h = (log π(c) − log π(r)) − (log π_ref(c) − log π_ref(r)), the sums of the response
tokens' log-probabilities under the policy π and the frozen reference:
  DPO loss = −log σ(β·h),  IPO loss = (h − 1/(2β))².
The reference's log-probabilities are computed once, before training, and travel in the
batches. Metrics: the implicit reward margin β·h and the preference accuracy (share h > 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.config import TrainConfig
from lmjax.errors import ConfigError
from lmjax.posttrain.engine import Method, run_config, run_method
from lmjax.posttrain.examples import PreferencePair
from lmjax.posttrain.packing import epoch_batches, pad_rows, tokenize
from lmjax.posttrain.placement import Placement, trained_names
from lmjax.posttrain.sequences import response_logprobs, score_in_batches
from lmjax.posttrain.template import ChatTemplate
from lmjax.posttrain.tuning import FullTuning, Tuning
from lmjax.runs.layout import PathLike
from lmjax.tokenizers import Tokenizer

LOSSES = ("dpo", "ipo")


@dataclasses.dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1
    loss: str = "dpo"

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ConfigError(f"DPO beta={self.beta} must be > 0")
        if self.loss not in LOSSES:
            raise ConfigError(f"DPO loss={self.loss!r}: use one of {LOSSES}")


def preference_loss(policy_chosen: jax.Array, policy_rejected: jax.Array, ref_chosen: jax.Array,
                    ref_rejected: jax.Array, config: DPOConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean loss over pairs from the four log-probabilities, and the metrics."""
    h = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    if config.loss == "dpo":
        losses = -jax.nn.log_sigmoid(config.beta * h)
    else:
        losses = jnp.square(h - 1.0 / (2.0 * config.beta))
    metrics = {"reward_margin": jnp.mean(config.beta * h), "accuracy": jnp.mean(h > 0)}
    return jnp.mean(losses), metrics


def pair_rows(pairs: Sequence[PreferencePair], tokenizer: Tokenizer, template: ChatTemplate,
              seq_len: int) -> dict[str, np.ndarray]:
    """chosen_* and rejected_* arrays (one response per row, right-padded)."""
    rows = {}
    for side in ("chosen", "rejected"):
        tokenized = [tokenize(tokenizer, template, pair.prompt, getattr(pair, side), seq_len) for pair in pairs]
        rows.update({f"{side}_{name}": value for name, value in pad_rows(tokenized, seq_len).items()})
    return rows


def side(batch: dict, name: str) -> dict:
    """The chosen or rejected half of a pair batch, under plain names."""
    prefix = f"{name}_"
    return {key[len(prefix):]: value for key, value in batch.items() if key.startswith(prefix)}


def reference_logprobs(model: nn.Module, params: Any, rows: dict[str, np.ndarray],
                       batch_size: int = 64) -> dict[str, np.ndarray]:
    """ref_chosen and ref_rejected: the frozen reference's log-probabilities, once."""
    score = jax.jit(lambda batch: response_logprobs(model, params, batch))
    return {f"ref_{name}": score_in_batches(score, side(rows, name), batch_size) for name in ("chosen", "rejected")}


def dpo_method(model: nn.Module, params: Any, reference_params: Any, rows: dict[str, np.ndarray],
               train: TrainConfig, dpo: DPOConfig = DPOConfig(), tuning: Tuning | None = None,
               placement: Placement | None = None) -> Method:
    """DPO/IPO for the engine: the policy starts from `params`, the frozen reference's
    log-probabilities are computed once and ride in the batches; weight: the pairs."""
    tuning = tuning or FullTuning()
    rows = {**rows, **reference_logprobs(model, reference_params, rows)}
    trained = tuning.init(params)

    def loss(trained, batch):
        policy = tuning.model_params(trained)
        chosen = response_logprobs(model, policy, side(batch, "chosen"))
        rejected = response_logprobs(model, policy, side(batch, "rejected"))
        mean, metrics = preference_loss(chosen, rejected, batch["ref_chosen"], batch["ref_rejected"], dpo)
        return mean, chosen.shape[0], metrics

    return Method(name="dpo", trained=trained, loss=loss,
                  batches=epoch_batches(rows, train.global_batch_size, train.seed),
                  batch_shape=(train.global_batch_size, rows["chosen_inputs"].shape[1]), forward_passes=2,
                  transform=lambda base: tuning.optimizer(base, trained),
                  names=trained_names(placement, tuning, model))


def train_dpo(model: nn.Module, params: Any, reference_params: Any, rows: dict[str, np.ndarray],
              train: TrainConfig, run_dir: PathLike, dpo: DPOConfig = DPOConfig(),
              tuning: Tuning | None = None,
              placement: Placement | None = None) -> tuple[Any, list[dict], Any]:
    """The policy (starting from `params`) trained on pair rows as a run in `run_dir`;
    reference frozen; on a mesh with a `placement`."""
    tuning = tuning or FullTuning()
    method = dpo_method(model, params, reference_params, rows, train, dpo, tuning, placement)
    trained, result = run_method(method, run_config(model.config, train, run_dir), placement=placement)
    return tuning.merged(trained), result.records, trained
