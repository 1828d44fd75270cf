"""Next-token prediction: the GPT objective."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

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


class _Running(NamedTuple):
    """What the chunked loss carries across vocabulary chunks, per token."""

    max_BT: jax.Array  # largest logit so far (no gradient: logsumexp does not depend on it)
    sum_BT: jax.Array  # sum of exp(logit - max_BT) so far
    target_BT: jax.Array  # the target's logit, once its chunk has been seen
    best_BT: jax.Array  # largest logit so far, and its id, for accuracy
    argmax_BT: jax.Array


def chunked_cross_entropy(hidden_BTD: jax.Array, weights_DV: jax.Array, targets_BT: jax.Array,
                          chunks: int) -> tuple[jax.Array, jax.Array]:
    """Per-token NLL and argmax id of the logits hidden·weights (float32), formed one vocabulary
    chunk of V/chunks at a time: an online logsumexp as in flash attention. The chunk body is
    rematerialised, so neither pass holds more than B×T×(V/chunks) logits."""
    d_model, vocab = weights_DV.shape
    size = vocab // chunks
    weights_CDV = weights_DV.reshape(d_model, chunks, size).transpose(1, 0, 2)

    @jax.checkpoint
    def step(run: _Running, chunk: tuple[jax.Array, jax.Array]) -> tuple[_Running, None]:
        weights_DC, start = chunk
        logits_BTC = jnp.einsum("btd,dc->btc", hidden_BTD, weights_DC).astype(jnp.float32)
        max_BT = jnp.maximum(run.max_BT, jax.lax.stop_gradient(logits_BTC.max(axis=-1)))
        sum_BT = run.sum_BT * jnp.exp(run.max_BT - max_BT) + jnp.exp(
            logits_BTC - max_BT[..., None]).sum(axis=-1)
        local_BT = targets_BT - start
        inside_BT = (local_BT >= 0) & (local_BT < size)
        picked_BT = jnp.take_along_axis(logits_BTC, jnp.clip(local_BT, 0, size - 1)[..., None],
                                        axis=-1)[..., 0]
        better_BT = logits_BTC.max(axis=-1) > run.best_BT  # strict: the first maximum wins
        return _Running(
            max_BT, sum_BT, jnp.where(inside_BT, picked_BT, run.target_BT),
            jnp.where(better_BT, logits_BTC.max(axis=-1), run.best_BT),
            jnp.where(better_BT, jnp.argmax(logits_BTC, axis=-1) + start, run.argmax_BT),
        ), None

    shape = targets_BT.shape
    empty = _Running(jnp.full(shape, -jnp.inf), jnp.zeros(shape), jnp.zeros(shape),
                     jnp.full(shape, -jnp.inf), jnp.zeros(shape, jnp.int32))
    run, _ = jax.lax.scan(step, empty, (weights_CDV, jnp.arange(chunks) * size))
    return run.max_BT + jnp.log(run.sum_BT) - run.target_BT, run.argmax_BT


@dataclasses.dataclass(frozen=True)
class CausalLM:
    """Inputs are tokens 0..T-1 of a window of T+1, targets tokens 1..T.

    `pad_id` marks padding in the final, partial window of a corpus; those positions get
    zero loss weight, so packing loses no token and predicts no padding.
    With `loss_chunks` > 1 the model returns its final hidden states and output weights
    (`model_options` asks for `output_hidden`) and the loss forms the logits a vocabulary
    chunk at a time, so B×T×V float32 logits never exist at once.
    """

    pad_id: int = -1
    loss_chunks: int = 1  # >1: ask the model for Unembedded outputs, form logits in chunks
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

    @property
    def model_options(self) -> dict[str, Any]:
        """Keyword options for the model's `apply` beyond the batch's arrays: with chunks, ask
        for the final hidden states and output weights instead of logits."""
        return {"output_hidden": True} if self.loss_chunks > 1 else {}

    def loss(self, outputs: Any, batch: Batch) -> tuple[jax.Array, jax.Array, dict]:
        """Summed NLL, token count and correct predictions, from logits B×T×V or (with
        `loss_chunks` > 1) the model's (hidden_BTD, weights_DV)."""
        weights_BT = batch["weights"]
        if self.loss_chunks > 1:
            hidden_BTD, weights_DV = outputs
            nll_BT, argmax_BT = chunked_cross_entropy(hidden_BTD, weights_DV, batch["targets"],
                                                      self.loss_chunks)
        else:
            nll_BT = token_cross_entropy(outputs, batch["targets"])
            argmax_BT = jnp.argmax(outputs, axis=-1)
        correct_BT = (argmax_BT == batch["targets"]) * weights_BT
        return (nll_BT * weights_BT).sum(), weights_BT.sum(), {"accuracy": correct_BT.sum()}
