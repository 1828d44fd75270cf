"""What an objective is: it turns a window of token ids into a training example, and a
model's logits plus that example into a loss. It never sees the mesh or the model's insides."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

Batch = dict[str, Any]


class Objective(Protocol):
    name: str
    loss_name: str  # the metric's name in logs, e.g. "lm_loss", "mlm_loss"
    window_overlap: int  # tokens consecutive windows share (1 for next-token prediction)

    def window_length(self, seq_len: int) -> int:
        """How many consecutive corpus tokens one example consumes."""

    def make_example(self, window: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One example (numpy arrays of fixed shape) from a window of token ids."""

    def model_inputs(self, batch: Batch) -> dict[str, Any]:
        """Keyword arguments for the model's `apply`, named as in transformers."""

    def loss(self, logits: Any, batch: Batch) -> tuple[Any, Any, dict[str, Any]]:
        """(summed loss, number of predicted tokens, summed extra metrics) for a batch."""
