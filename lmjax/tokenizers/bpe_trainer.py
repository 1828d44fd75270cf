"""Learning BPE merges from word counts, without rescanning the corpus for every merge.

Training works on distinct pre-tokens ("words") with their counts, never on the raw text.
It keeps, for every adjacent pair, its total count and the set of words it occurs in; a
merge rewrites only those words and adjusts only the counts of pairs they contain. The
next pair comes from a max-heap with lazy deletion: every count change pushes a fresh
entry and stale entries are dropped when they surface.

Tie-breaking: among pairs with the same count, the one with the smallest (left id,
right id) wins, i.e. the pair made of the earliest tokens. Counts include overlapping
occurrences ("aaa" counts the pair (a, a) twice), as in Sennrich et al. and HF tokenizers.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TypeVar

from tqdm import tqdm

Pair = tuple[int, int]
Merge = tuple[int, int, int]
Symbol = TypeVar("Symbol", bytes, str)


def learn_merges(
    word_counts: Mapping[tuple[int, ...], int],
    vocab: list[Symbol],
    vocab_size: int,
    progress: bool | None = None,
) -> list[Merge]:
    """Merge pairs until `vocab` (id -> symbol, extended in place) has `vocab_size` entries.

    Symbols are bytes for byte-level BPE (str for character-level examples); a merge's
    result is the concatenation of its parts. Returns (left, right, result) ids in
    learning order. A merge whose result is already in the vocabulary (the same bytes
    reached by another split) reuses that id, so each symbol is stored once, as GPT-2's
    files require. Stops early only when no adjacent pair is left. `progress=None`
    shows a bar on a terminal only.
    """
    words = [list(word) for word in word_counts]
    freqs = list(word_counts.values())
    symbol_ids = {symbol: token_id for token_id, symbol in enumerate(vocab)}
    pair_counts: dict[Pair, int] = defaultdict(int)
    pair_words: dict[Pair, set[int]] = defaultdict(set)
    for index, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freqs[index]
            pair_words[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[Merge] = []
    show = None if progress is None else not progress
    with tqdm(total=max(vocab_size - len(vocab), 0), desc="BPE merges", unit="token", disable=show) as bar:
        while len(vocab) < vocab_size and heap:
            negative_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair) != -negative_count:
                continue
            symbol = vocab[pair[0]] + vocab[pair[1]]
            if symbol not in symbol_ids:
                symbol_ids[symbol] = len(vocab)
                vocab.append(symbol)
                bar.update()
            merges.append((*pair, symbol_ids[symbol]))
            for other, change in _apply_merge(pair, symbol_ids[symbol], words, freqs, pair_words).items():
                count = pair_counts[other] + change
                if count > 0:
                    pair_counts[other] = count
                    heapq.heappush(heap, (-count, other))
                else:
                    del pair_counts[other]
    return merges


def _apply_merge(
    pair: Pair, new_id: int, words: list[list[int]], freqs: list[int], pair_words: dict[Pair, set[int]]
) -> dict[Pair, int]:
    """Rewrite the words that contain `pair`; return how each pair's count changed.

    A word stays in `pair_words` of a pair it no longer contains: that stale entry only
    costs a no-op rewrite later, which is cheaper than keeping the sets exact.
    """
    changes: dict[Pair, int] = defaultdict(int)
    for index in pair_words.pop(pair):
        word, freq = words[index], freqs[index]
        merged = merge_pair(word, pair, new_id)
        if len(merged) == len(word):
            continue
        for old in zip(word, word[1:]):
            changes[old] -= freq
        for new in zip(merged, merged[1:]):
            changes[new] += freq
            pair_words[new].add(index)
        words[index] = merged
    return {other: change for other, change in changes.items() if change}


def merge_pair(word: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace each occurrence of `pair`, scanning left to right without overlaps."""
    left, right = pair
    merged: list[int] = []
    i, end = 0, len(word)
    while i < end:
        if i + 1 < end and word[i] == left and word[i + 1] == right:
            merged.append(new_id)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged
