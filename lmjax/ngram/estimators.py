"""Kneser-Ney and absolute-discount backoff as per-event probabilities and per-history weights.

Both estimators end up in the form of an ARPA file: for every seen event (history, word)
a probability, and for every seen history a weight that multiplies the next lower order
for words not seen after it. `NGramLM` walks that structure the same way for both, so
scoring is one vectorised loop over the orders.
"""

from __future__ import annotations

import numpy as np

from lmjax.ngram.counts import NGramCounts


def estimate_discounts(counts: np.ndarray, modified: bool) -> np.ndarray:
    """Discounts for counts 1, 2 and 3+ from count-of-counts (Ney et al.; Chen & Goodman).

    Tiny corpora can lack the singletons or doubletons the formulas divide by, or give a
    discount outside (0, c); then the plain estimate Y (or 0.5 without one) stands in.
    """
    n1, n2, n3, n4 = (int(np.sum(counts == c)) for c in (1, 2, 3, 4))
    y = n1 / (n1 + 2 * n2) if n1 > 0 and n2 > 0 else 0.5
    if not modified:
        return np.full(3, y)
    ratios = (n2 / n1 if n1 else np.nan, n3 / n2 if n2 else np.nan, n4 / n3 if n3 else np.nan)
    found = [c - (c + 1) * y * r for c, r in zip((1, 2, 3), ratios)]
    return np.array([d if 0 < d < c else y for c, d in zip((1, 2, 3), found)])


def _discount_of(counts: np.ndarray, discounts: np.ndarray) -> np.ndarray:
    return discounts[np.minimum(counts, 3) - 1]


def kn_counts(table: NGramCounts, k: int) -> np.ndarray:
    """Counts KN uses at order k: raw at the top order and for n-grams that begin with `<s>`
    (nothing can precede them), continuation counts N1+(• w_2..w_k) elsewhere."""
    if k == table.order:
        return table.counts[k]
    continuation = table.continuation_counts(k)
    if k == 1:
        return continuation
    return np.where(table.starts_with_bos(k), table.counts[k], continuation)


def kneser_ney(
    table: NGramCounts, support: int, discounts: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Interpolated KN: p(w|h) = max(c-D,0)/c(h) + γ(h) p(w|h'), down to a uniform over V."""
    probs, weights = [np.zeros(0)], [np.zeros(0)]
    for k in range(1, table.order + 1):
        counts = kn_counts(table, k)
        discount = _discount_of(counts, discounts[k])
        totals = table.history_totals(k, counts)
        gamma = table.history_totals(k, discount) / totals
        lower = 1.0 / support if k == 1 else probs[k - 1][table.suffix_of(k)]
        history = table.history_of(k)
        probs.append((counts - discount) / totals[history] + gamma[history] * lower)
        weights.append(gamma)
    return probs, weights


def absolute_discount_backoff(
    table: NGramCounts, support: int, discounts: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Backoff with absolute discounting (Ney, Essen & Kneser 1994), normalised like Katz.

    Seen events get (c-D)/c(h); the freed mass D·N1+(h•)/c(h) goes to the unseen words in
    proportion to the lower order, renormalised over those words only, so each conditional
    distribution sums to one. A history followed by every word of V has no unseen word to
    give mass to, so it is left undiscounted. The unigrams interpolate with a uniform over V.
    """
    probs, weights = [np.zeros(0)], [np.zeros(0)]
    for k in range(1, table.order + 1):
        counts = table.counts[k]
        history = table.history_of(k)
        totals = table.history_totals(k, counts)
        distinct = np.bincount(history, minlength=len(totals))
        full = distinct >= support if k > 1 else np.zeros(len(totals), dtype=bool)
        discount = np.where(full[history], 0.0, _discount_of(counts, discounts[k]))
        freed = table.history_totals(k, discount) / totals
        if k == 1:
            probs.append((counts - discount) / totals[history] + freed[history] / support)
            weights.append(freed)
            continue
        lower_seen = table.history_totals(k, probs[k - 1][table.suffix_of(k)])
        unseen_mass = np.where(full, 1.0, np.maximum(1.0 - lower_seen, np.finfo(float).tiny))
        probs.append((counts - discount) / totals[history])
        weights.append(freed / unseen_mass)
    return probs, weights
