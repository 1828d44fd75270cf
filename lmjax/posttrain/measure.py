"""What compression is judged by: perplexity on held-out token rows and decoding speed.

Held-out text for stories260K is sampled from the model itself (temperature 1, a fixed seed,
rows that start at BOS): no TinyStories text ships with the data, and a model's perplexity on
its own unbiased samples estimates its entropy rate, so a compressed model's increase over it
is the KL divergence it added (in expectation). Every function takes any `model` with `.config`
and `.apply` (a GPT or a wrapper that dequantizes), so the same code scores every variant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.decoding import Generator, Sampling
from lmjax.errors import DataError
from lmjax.objectives.causal_lm import token_cross_entropy


def sample_rows(model: Any, params: Any, n_rows: int, length: int, seed: int,
                bos_id: int = 1, batch: int = 64) -> np.ndarray:
    """n_rows × length ids: BOS, then `length - 1` tokens sampled at temperature 1 with the
    KV-cache decoder, no early stop (a row may hold several stories, each after a BOS)."""
    generator = Generator(model, params, Sampling(temperature=1.0))
    rows = []
    for start in range(0, n_rows, batch):
        prompts = [[bos_id]] * min(batch, n_rows - start)
        new = generator.generate(prompts, length - 1, seed=seed + start)
        rows.extend([bos_id, *ids] for ids in new)
    return np.asarray(rows, np.int32)


def nll_scorer(model: Any, batch: int = 32) -> Callable[[Any, np.ndarray], float]:
    """`score(params, rows)`: the mean next-token negative log-likelihood (nats) over every
    target of the rows. Compiled once per model, so scoring many parameter sets of one
    structure (a pruning sweep) compiles once."""
    summed = jax.jit(lambda p, ids: token_cross_entropy(
        model.apply({"params": p}, ids[:, :-1]), ids[:, 1:]).sum())

    def score(params: Any, rows: np.ndarray) -> float:
        rows = _checked_rows(rows, model.config.max_len)
        total = sum(float(summed(params, jnp.asarray(rows[i:i + batch])))
                    for i in range(0, len(rows), batch))
        return total / (rows.shape[0] * (rows.shape[1] - 1))

    return score


def perplexity(model: Any, params: Any, rows: np.ndarray) -> float:
    """exp(mean next-token NLL) over the rows."""
    return math.exp(nll_scorer(model)(params, rows))


def _checked_rows(rows: np.ndarray, max_len: int) -> np.ndarray:
    rows = np.asarray(rows, np.int32)
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise DataError(f"held-out rows must be a 2-D array of at least 2 tokens each, got shape {rows.shape}")
    if rows.shape[1] - 1 > max_len:
        raise DataError(f"held-out rows of {rows.shape[1]} tokens exceed the model's context "
                        f"{max_len} + 1: cut them shorter")
    return rows


def decode_tokens_per_second(model: Any, params: Any, batch: int = 8, new_tokens: int = 128,
                             repeats: int = 3, bos_id: int = 1) -> float:
    """Greedy KV-cache decoding throughput from BOS (batch × new_tokens per run), the best of
    `repeats` timed runs after one untimed run that compiles."""
    generator = Generator(model, params, Sampling(temperature=0.0))
    prompts = [[bos_id]] * batch
    generator.generate(prompts, new_tokens)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        generator.generate(prompts, new_tokens)
        best = min(best, time.perf_counter() - start)
    return batch * new_tokens / best
