"""Shannon's letter entropies F_N (Shannon 1951, "Prediction and Entropy of Printed English").

F_N is the conditional entropy of a letter given the N-1 letters before it,
F_N = H(N-gram) - H((N-1)-gram), estimated here from the corpus' own block frequencies
(the plug-in estimate). F0 = log2 of the alphabet size: no statistics at all.
"""

from __future__ import annotations

import math

import numpy as np

from lmjax.errors import ConfigError, DataError

# Shannon's published values, F0..F3, for the 26-letter and the 27-symbol (with space) alphabet.
SHANNON_1951 = {26: (4.70, 4.14, 3.56, 3.3), 27: (4.76, 4.03, 3.32, 3.1)}


def reduce_to_letters(text: str, keep_space: bool = False) -> np.ndarray:
    """Codes 0..25 for a-z (case folded), 26 for a word break when keep_space.

    Everything else is dropped; with keep_space any run of non-letters becomes one break.
    """
    raw = np.frombuffer(text.lower().encode("ascii", errors="ignore"), dtype=np.uint8).astype(np.int64)
    is_letter = (raw >= ord("a")) & (raw <= ord("z"))
    if not keep_space:
        return raw[is_letter] - ord("a")
    codes = np.where(is_letter, raw - ord("a"), 26)
    keep = np.concatenate(([True], ~((codes[1:] == 26) & (codes[:-1] == 26))))
    return codes[keep]


def block_entropy(codes: np.ndarray, n: int, alphabet: int) -> float:
    """Entropy in bits of the overlapping n-letter blocks of the text."""
    if n == 0:
        return 0.0
    m = len(codes) - n + 1
    keys = np.zeros(m, dtype=np.int64)
    for i in range(n):
        keys = keys * alphabet + codes[i : i + m]
    counts = np.unique(keys, return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def letter_entropies(codes: np.ndarray, max_order: int, alphabet: int) -> list[float]:
    """[F0, F1, ..., F_max_order] in bits per letter."""
    if max_order < 0 or alphabet ** max(max_order, 1) >= 2**62:
        raise ConfigError(f"max order must be between 0 and {int(62 / math.log2(alphabet))}, got {max_order}")
    if len(codes) <= max_order:
        raise DataError(f"text has {len(codes)} letters, too few to estimate F{max_order}: give a longer text")
    blocks = [block_entropy(codes, n, alphabet) for n in range(max_order + 1)]
    return [math.log2(alphabet)] + [blocks[n] - blocks[n - 1] for n in range(1, max_order + 1)]
