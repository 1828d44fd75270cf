"""Prompts in, rows of ids out: the checks, padding and stop handling every generator shares."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import jax
import numpy as np

from lmjax.errors import DataError

Prompts = Sequence[int] | Sequence[Sequence[int]] | np.ndarray


def prompt_rows(prompts: Prompts, vocab_size: int, max_len: int | None = None) -> list[np.ndarray]:
    """One int32 array per prompt: `prompts` is one list of ids, a list of lists of any
    lengths, or a B×T array. Empty, too long or out-of-vocabulary prompts are refused."""
    if isinstance(prompts, np.ndarray) or not len(prompts) or np.isscalar(prompts[0]):
        array = np.asarray(prompts, dtype=np.int32)
        rows = list(array[None] if array.ndim == 1 else array)
        if array.ndim not in (1, 2):
            raise DataError("prompts must be a list of ids, a list of such lists or a B×T array")
    else:
        rows = [np.asarray(row, dtype=np.int32).reshape(-1) for row in prompts]
    for row in rows:
        _check_row(row, vocab_size, max_len)
    return rows


def _check_row(row: np.ndarray, vocab_size: int, max_len: int | None) -> None:
    if row.size == 0:
        raise DataError("the prompt must hold at least one token (e.g. BOS)")
    if max_len is not None and row.size > max_len:
        raise DataError(
            f"the prompt is {row.size} tokens but the model's context is {max_len}: "
            "shorten the prompt"
        )
    if row.min() < 0 or row.max() >= vocab_size:
        raise DataError(f"prompt ids must lie in [0, {vocab_size})")


def pad(rows: list[np.ndarray], left: bool) -> tuple[np.ndarray, np.ndarray]:
    """B×T ids (padded with 0) and their mask (1 = real token), padded on the left or right."""
    length = max(row.size for row in rows)
    ids_BT = np.zeros((len(rows), length), np.int32)
    mask_BT = np.zeros((len(rows), length), np.int32)
    for b, row in enumerate(rows):
        span = slice(length - row.size, length) if left else slice(0, row.size)
        ids_BT[b, span] = row
        mask_BT[b, span] = 1
    return ids_BT, mask_BT


class StopTracker:
    """Which rows have produced a stop id. Without stop ids it never reads tokens back, so
    steps are dispatched without waiting for the device."""

    def __init__(self, batch: int, stop_ids: Collection[int]) -> None:
        self.stop_ids = np.array(sorted(stop_ids), dtype=np.int32)
        self.stopped_B = np.zeros(batch, dtype=bool)

    def all_stopped(self, token_B: jax.Array) -> bool:
        if not self.stop_ids.size:
            return False
        self.stopped_B |= np.isin(np.asarray(token_B), self.stop_ids)
        return bool(self.stopped_B.all())


def rows_until_stop(tokens: list[np.ndarray], limits: Sequence[int],
                    stop_ids: Collection[int]) -> list[list[int]]:
    """Each row's tokens (N arrays of B) up to its own limit, ending before its first stop id."""
    if not tokens:
        return [[] for _ in limits]
    rows = np.stack(tokens, axis=1).tolist()
    return [_until_stop(row[:limit], stop_ids) for row, limit in zip(rows, limits, strict=True)]


def _until_stop(row: list[int], stop_ids: Collection[int]) -> list[int]:
    for position, token in enumerate(row):
        if token in stop_ids:
            return row[:position]
    return row
