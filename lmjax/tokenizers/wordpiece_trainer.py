"""Learning a WordPiece vocabulary: merge the pair with the highest likelihood score.

Each word starts as its characters, interior ones prefixed with "##" (`word` -> `w ##o
##r ##d`). A round merges the adjacent pair (i, j) with the highest score
F(i, j) / (F(i) F(j)), where F counts occurrences over the corpus; the new token keeps
the prefix of its first part (`a` + `##b` -> `ab`, `##a` + `##b` -> `##ab`).

As in the BPE trainer, counts are kept per pair with the words each pair occurs in, and
a merge rewrites only those words. The score of a pair also depends on its parts'
counts, and a merge changes F of its parts and of the merged token, so every pair that
contains one of those gets a fresh heap entry; an entry whose score no longer matches is stale and skipped.

Tie-breaking: equal scores go to the smallest (left id, right id). Scores are exact
ratios of integers rounded once, so equal ratios compare equal.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping

from tqdm import tqdm

PREFIX = "##"
Pair = tuple[int, int]


def split_word(word: str) -> list[str]:
    """`word` -> `w ##o ##r ##d`."""
    return [word[0], *(PREFIX + char for char in word[1:])]


def base_alphabet(words: Iterable[str]) -> list[str]:
    """Every character with and without the prefix: all bare ones, then all prefixed, sorted."""
    chars = sorted({char for word in words for char in word})
    return [*chars, *(PREFIX + char for char in chars)]


def join_tokens(left: str, right: str) -> str:
    return left + right.removeprefix(PREFIX)


def learn_vocabulary(
    word_counts: Mapping[str, int], vocab: list[str], vocab_size: int, progress: bool | None = None
) -> list[str]:
    """Extend `vocab` (already holding the specials and base alphabet) in place to `vocab_size`.

    A merge whose result is already a token reuses it (the vocabulary holds each string
    once). Stops early only when no adjacent pair is left.
    """
    token_ids = {token: token_id for token_id, token in enumerate(vocab)}
    words = [[token_ids[piece] for piece in split_word(word)] for word in word_counts]
    freqs = list(word_counts.values())
    token_counts: dict[int, int] = defaultdict(int)
    pair_counts: dict[Pair, int] = defaultdict(int)
    pair_words: dict[Pair, set[int]] = defaultdict(set)
    token_pairs: dict[int, set[Pair]] = defaultdict(set)
    for index, word in enumerate(words):
        for token in word:
            token_counts[token] += freqs[index]
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freqs[index]
            pair_words[pair].add(index)
    for left, right in pair_counts:
        token_pairs[left].add((left, right))
        token_pairs[right].add((left, right))

    def score(pair: Pair) -> float:
        return pair_counts[pair] / (token_counts[pair[0]] * token_counts[pair[1]])

    heap = [(-score(pair), pair) for pair in pair_counts]
    heapq.heapify(heap)
    show = None if progress is None else not progress
    with tqdm(total=max(vocab_size - len(vocab), 0), desc="WordPiece merges", unit="token", disable=show) as bar:
        while len(vocab) < vocab_size and heap:
            negative_score, pair = heapq.heappop(heap)
            if pair not in pair_counts or score(pair) != -negative_score:
                continue
            token = join_tokens(vocab[pair[0]], vocab[pair[1]])
            if token not in token_ids:
                token_ids[token] = len(vocab)
                vocab.append(token)
                bar.update()
            new_id = token_ids[token]
            pair_changes, token_changes = _apply_merge(pair, new_id, words, freqs, pair_words)
            for token_id, change in token_changes.items():
                token_counts[token_id] += change
            for other, change in pair_changes.items():
                count = pair_counts.get(other, 0) + change
                if count > 0:
                    pair_counts[other] = count
                    token_pairs[other[0]].add(other)
                    token_pairs[other[1]].add(other)
                else:
                    del pair_counts[other]
            rescored = set(pair_changes)
            for token_id in token_changes:
                rescored.update(token_pairs[token_id])
            for other in rescored:
                if other in pair_counts:
                    heapq.heappush(heap, (-score(other), other))
    return vocab


def _apply_merge(
    pair: Pair, new_id: int, words: list[list[int]], freqs: list[int], pair_words: dict[Pair, set[int]]
) -> tuple[dict[Pair, int], dict[int, int]]:
    """Rewrite the words that contain `pair`; return the changes of pair and token counts.

    A word may stay listed under a pair it no longer contains; rewriting it then is a no-op.
    """
    left, right = pair
    pair_changes: dict[Pair, int] = defaultdict(int)
    token_changes: dict[int, int] = defaultdict(int)
    for index in pair_words.pop(pair):
        word, freq = words[index], freqs[index]
        merged: list[int] = []
        i = 0
        while i < len(word):
            if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
                merged.append(new_id)
                token_changes[left] -= freq
                token_changes[right] -= freq
                token_changes[new_id] += freq
                i += 2
            else:
                merged.append(word[i])
                i += 1
        if len(merged) == len(word):
            continue
        for old in zip(word, word[1:]):
            pair_changes[old] -= freq
        for new in zip(merged, merged[1:]):
            pair_changes[new] += freq
            pair_words[new].add(index)
        words[index] = merged
    return {other: change for other, change in pair_changes.items() if change}, token_changes
