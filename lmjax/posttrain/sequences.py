"""Forward passes post-training needs beyond logits: log-probabilities of given targets and
the decoder's final hidden state (the output of its last norm, which heads read)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.config import ModelConfig
from lmjax.errors import ConfigError
from lmjax.objectives.causal_lm import token_cross_entropy

FINAL_NORM = "ln_f"


def logits_and_hidden(model: nn.Module, params: Any, inputs_BT: jax.Array,
                      segment_ids_BT: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Logits B×T×V and the final hidden state B×T×D, captured from the model's last norm so
    the model itself needs no second output."""
    logits_BTV, state = model.apply(
        {"params": params}, inputs_BT, segment_ids=segment_ids_BT,
        capture_intermediates=lambda module, method: module.name == FINAL_NORM and method == "__call__",
        mutable=["intermediates"],
    )
    return logits_BTV, state["intermediates"][FINAL_NORM]["__call__"][0].astype(jnp.float32)


def token_logprobs(logits_BTV: jax.Array, targets_BT: jax.Array) -> jax.Array:
    """log p(target) at each position."""
    return -token_cross_entropy(logits_BTV, targets_BT)


def response_logprobs(model: nn.Module, params: Any, batch: dict[str, jax.Array]) -> jax.Array:
    """Sum over each row's response targets of log p (one example per row)."""
    logits_BTV = model.apply({"params": params}, batch["inputs"])
    return (token_logprobs(logits_BTV, batch["targets"]) * batch["weights"]).sum(axis=1)


def score_in_batches(score: Callable[[dict], jax.Array], rows: dict[str, np.ndarray],
                     batch_size: int = 64) -> np.ndarray:
    """`score` (one value per row, e.g. jitted) over `rows` in slices of `batch_size`, joined."""
    n = next(iter(rows.values())).shape[0]
    return np.concatenate([np.asarray(score({k: v[i:i + batch_size] for k, v in rows.items()}))
                           for i in range(0, n, batch_size)])


def masked_mean_nll(model: nn.Module, params: Any, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """Negative log-likelihood of the weighted targets, divided by the number of weighted
    targets in the whole (global) batch; with the batch's `segment_ids` when packed."""
    logits_BTV = model.apply({"params": params}, batch["inputs"], segment_ids=batch.get("segment_ids"))
    weights_BT = batch["weights"]
    tokens = weights_BT.sum()
    nll = (token_cross_entropy(logits_BTV, batch["targets"]) * weights_BT).sum() / jnp.maximum(tokens, 1.0)
    return nll, tokens


def check_same_model(policy: ModelConfig, reference: ModelConfig, what: str = "reference") -> None:
    """A reference (or reward) model must score the same ids the same way: same vocabulary
    and architecture as the policy."""
    if reference.vocab_size != policy.vocab_size:
        raise ConfigError(f"the {what} model's vocabulary is {reference.vocab_size} but the policy's is "
                          f"{policy.vocab_size}: give a {what} model with the policy's tokenizer")
    fields = ("arch", "d_model", "n_layers", "n_heads", "kv_heads", "d_ff", "norm", "position", "mlp")
    differ = [f"{name} {getattr(reference, name)} vs {getattr(policy, name)}" for name in fields
              if getattr(reference, name) != getattr(policy, name)]
    if differ:
        raise ConfigError(f"the {what} model's architecture differs from the policy's ({', '.join(differ)}): "
                          f"start the policy from the {what} model (e.g. the SFT run)")
