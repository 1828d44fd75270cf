"""Next-token prediction: the GPT objective."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.objectives.base import Batch


def token_cross_entropy(logits_BTV: jax.Array, targets_BT: jax.Array) -> jax.Array:
    """Per-token negative log-likelihood in nats, computed in float32 whatever the logits' dtype."""
    logits_BTV = logits_BTV.astype(jnp.float32)
    log_z_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
    target_logit_BT = jnp.take_along_axis(logits_BTV, targets_BT[..., None], axis=-1)[..., 0]
    return log_z_BT - target_logit_BT


@dataclasses.dataclass(frozen=True)
class CausalLM:
    """Inputs are tokens 0..T-1 of a window of T+1, targets tokens 1..T.

    `pad_id` marks padding in the final, partial window of a corpus; those positions get
    zero loss weight, so packing loses no token and predicts no padding.
    """

    pad_id: int = -1
    name: str = "causal_lm"
    loss_name: str = "lm_loss"
    # A window's first token is only ever an input, so consecutive windows share one token
    # and every token but the corpus's first is predicted exactly once.
    window_overlap: int = 1

    def window_length(self, seq_len: int) -> int:
        return seq_len + 1

    def make_example(self, window: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        del rng
        window = np.asarray(window, dtype=np.int32)
        targets = window[1:]
        weights = (targets != self.pad_id).astype(np.float32)
        inputs = np.where(window[:-1] == self.pad_id, 0, window[:-1])
        return {
            "inputs": inputs,
            "targets": np.where(weights > 0, targets, 0).astype(np.int32),
            "weights": weights,
        }

    def model_inputs(self, batch: Batch) -> dict[str, Any]:
        return {"input_ids": batch["inputs"]}

    def loss(self, logits_BTV: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array, dict]:
        weights_BT = batch["weights"]
        nll_BT = token_cross_entropy(logits_BTV, batch["targets"])
        correct_BT = (jnp.argmax(logits_BTV, axis=-1) == batch["targets"]) * weights_BT
        return (nll_BT * weights_BT).sum(), weights_BT.sum(), {"accuracy": correct_BT.sum()}
