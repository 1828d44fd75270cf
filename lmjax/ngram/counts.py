"""Counts of every k-gram (k ≤ n) held in sorted int64 arrays instead of nested dicts.

A history of length j is numbered through a suffix trie: its key is
`id(history without its oldest token) * V + oldest token`, and its id is the key's rank
among the sorted keys of that length. An event (history, word) at order k has the key
`id(history) * V + word`. Dropping the oldest token of a history (backing off) is then
integer division, and all lookups are `np.searchsorted` on whole arrays, which is what
lets a trigram on millions of tokens be counted in seconds.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from lmjax.ngram.vocab import BOS_ID


def find(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Rank of each key in sorted_keys, or -1 where it is absent (negative keys are absent)."""
    if len(sorted_keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_keys, keys)
    pos_ok = np.minimum(pos, len(sorted_keys) - 1)
    hit = (keys >= 0) & (pos < len(sorted_keys)) & (sorted_keys[pos_ok] == keys)
    return np.where(hit, pos, -1)


class NGramCounts:
    """Event counts at orders 1..n and the history trie, from n-token windows.

    Every row of `windows` is one predicted token (the last column) with its n-1 tokens of
    history; `weights` says how many times the row occurred. Because sentences are padded
    with n-1 `<s>`, every prediction has a full window, so lower-order counts are the
    marginals of the order-n rows and the order-n rows alone are a complete record.
    """

    def __init__(self, windows: np.ndarray, weights: np.ndarray, id_space: int):
        m, self.order = windows.shape
        self.id_space = id_space
        weights = np.asarray(weights, dtype=np.int64)
        self.history_keys: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        history = np.zeros(m, dtype=np.int64)
        histories = [history]
        stages = tqdm(range(1, 2 * self.order), desc="counting n-grams", leave=False, disable=None)
        for j in range(1, self.order):
            keys, history = np.unique(history * id_space + windows[:, self.order - 1 - j], return_inverse=True)
            self.history_keys.append(keys)
            histories.append(history.ravel())
            stages.update()
        self.event_keys: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
        self.counts: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
        for k in range(1, self.order + 1):
            keys, inverse = np.unique(histories[k - 1] * id_space + windows[:, -1], return_inverse=True)
            self.event_keys.append(keys)
            self.counts.append(np.bincount(inverse.ravel(), weights=weights, minlength=len(keys)).astype(np.int64))
            stages.update()
        stages.close()

    def history_of(self, k: int) -> np.ndarray:
        """History id (at length k-1) of every order-k event."""
        return self.event_keys[k] // self.id_space

    def word_of(self, k: int) -> np.ndarray:
        """Predicted token id of every order-k event."""
        return self.event_keys[k] % self.id_space

    def history_totals(self, k: int, values: np.ndarray) -> np.ndarray:
        """Sum of per-event values over each history of order-k events."""
        return np.bincount(self.history_of(k), weights=values, minlength=len(self.history_keys[k - 1]))

    def suffix_of(self, k: int) -> np.ndarray:
        """Index of the order-(k-1) event that each order-k event backs off to (k ≥ 2)."""
        shorter = self.history_keys[k - 1][self.history_of(k)] // self.id_space
        return find(self.event_keys[k - 1], shorter * self.id_space + self.word_of(k))

    def starts_with_bos(self, k: int) -> np.ndarray:
        """Whether each order-k event's oldest token is `<s>` (k ≥ 2)."""
        return self.history_keys[k - 1][self.history_of(k)] % self.id_space == BOS_ID

    def continuation_counts(self, k: int) -> np.ndarray:
        """N1+(• w_2..w_k): distinct tokens seen before each order-k event (k < n)."""
        return np.bincount(self.suffix_of(k + 1), minlength=len(self.event_keys[k]))

    def lookup_histories(self, contexts: np.ndarray) -> list[np.ndarray]:
        """Ids of the last j tokens of each context, for j = 0..L, -1 where never seen."""
        ids = np.zeros(len(contexts), dtype=np.int64)
        found = [ids]
        for j in range(1, contexts.shape[1] + 1):
            ids = find(self.history_keys[j], np.where(ids >= 0, ids * self.id_space + contexts[:, -j], -1))
            found.append(ids)
        return found

    def lookup_events(self, histories: list[np.ndarray], words: np.ndarray) -> list[np.ndarray]:
        """Index of each (history of length k-1, word) event at order k = 1..L+1, -1 if unseen."""
        return [np.zeros(0, dtype=np.int64)] + [
            find(self.event_keys[k], np.where(h >= 0, h * self.id_space + words, -1))
            for k, h in enumerate(histories, start=1)
        ]

    def ngrams(self) -> np.ndarray:
        """The distinct order-n windows as token-id rows (oldest first), aligned with counts[n]."""
        n = self.order
        rows = np.empty((len(self.event_keys[n]), n), dtype=np.int64)
        rows[:, -1] = self.word_of(n)
        history = self.history_of(n)
        for j in range(n - 1, 0, -1):
            keys = self.history_keys[j][history]
            rows[:, n - 1 - j] = keys % self.id_space
            history = keys // self.id_space
        return rows
