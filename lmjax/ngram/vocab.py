"""Token ↔ id mapping with the reserved symbols, and padding of sentences into one id array.

Ids 0, 1 and 2 are `<s>`, `</s>` and `<unk>` in every model, so the counting code can
recognise padding by id alone. Tokens may be strings or ints (the ids of an lmjax
tokenizer); the reserved symbols are strings, so they never collide with int tokens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from itertools import chain

import numpy as np

from lmjax.errors import DataError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
BOS_ID, EOS_ID, UNK_ID = 0, 1, 2
RESERVED = (BOS, EOS, UNK)

Sentence = Sequence[Hashable]


class Vocabulary:
    """The reserved symbols followed by the known tokens, most frequent first."""

    def __init__(self, tokens: Iterable[Hashable]):
        self.tokens: list[Hashable] = [*RESERVED, *tokens]
        self.index: dict[Hashable, int] = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, sentences: Sequence[Sentence], unk_cutoff: int) -> Vocabulary:
        """Keep tokens seen at least `unk_cutoff` times; the rest will read as `<unk>`."""
        counts = Counter(chain.from_iterable(sentences))
        for symbol in (BOS, EOS):
            if symbol in counts:
                raise DataError(
                    f"training text contains the reserved symbol {symbol}: "
                    "padding is added by the model, remove it from the text"
                )
        return cls(t for t, c in counts.most_common() if c >= unk_cutoff and t != UNK)

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, tokens: Iterable[Hashable]) -> np.ndarray:
        """Ids of the tokens, `<unk>` for unknown ones."""
        return np.fromiter((self.index.get(t, UNK_ID) for t in tokens), dtype=np.int64)

    def pad(self, sentences: Sequence[Sentence], n_bos: int, n_eos: int) -> tuple[np.ndarray, int]:
        """All sentences as one id array, each as `<s>`*n_bos + ids + `</s>`*n_eos.

        Returns the array and the number of tokens that were not in the vocabulary
        (a literal `<unk>` in the text is known, so it does not count).
        """
        lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
        flat = np.fromiter(
            (self.index.get(t, -1) for t in chain.from_iterable(sentences)),
            dtype=np.int64,
            count=int(lengths.sum()),
        )
        oov = flat < 0
        flat[oov] = UNK_ID
        spans = lengths + n_bos + n_eos
        starts = np.concatenate(([0], np.cumsum(spans)[:-1]))
        out = np.full(int(spans.sum()), BOS_ID, dtype=np.int64)
        first_token = np.repeat(starts + n_bos - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        out[first_token + np.arange(len(flat))] = flat
        ends = (starts + n_bos + lengths)[:, None] + np.arange(n_eos)[None, :]
        out[ends.ravel()] = EOS_ID
        return out, int(oov.sum())
