"""Perplexity, entropy and bits: one set of conversions for n-gram and neural evaluation.

Every model in lmjax reports the same quantity underneath: a total negative log-likelihood
in nats over some number of predicted units. Keeping the conversions here means a trigram
model and a GPT report numbers that can be put side by side without re-deriving them.

Inputs may be Python numbers, numpy scalars or concrete (non-traced) JAX scalars; each
function converts them with `float()` and returns a Python float, so call these outside
`jax.jit` on values that have been computed.
"""

from __future__ import annotations

import math

from lmjax.errors import LmjaxError

LN2 = math.log(2.0)


def _count(n: float, what: str) -> float:
    """Reject empty denominators with a message that names what was empty."""
    value = float(n)
    if not value > 0:
        raise LmjaxError(f"{what} must be positive, got {value}: evaluate on a non-empty text")
    return value


def _exp(x: float) -> float:
    """exp that saturates to inf instead of raising, since an infinite perplexity is an answer."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def perplexity_from_mean_loss(mean_nll_nats: float) -> float:
    """Perplexity from the mean cross-entropy in nats per predicted unit."""
    return _exp(float(mean_nll_nats))


def bits_from_mean_loss(mean_nll_nats: float) -> float:
    """Bits per predicted unit from a mean loss in nats (a training loss, say)."""
    return float(mean_nll_nats) / LN2


def perplexity(total_nll_nats: float, n_predicted: float) -> float:
    """p(w_1..w_N)^(-1/N) from the total negative log-likelihood in nats of N predictions."""
    return _exp(float(total_nll_nats) / _count(n_predicted, "number of predicted units"))


def entropy(total_nll_nats: float, n_predicted: float, base: float = 2) -> float:
    """Cross-entropy per predicted unit in the given log base (2: bits, e: nats)."""
    mean = float(total_nll_nats) / _count(n_predicted, "number of predicted units")
    base = float(base)
    if not (base > 0 and base != 1):
        raise LmjaxError(f"log base must be positive and not 1, got {base}")
    return mean / math.log(base)


def bits_per_byte(total_nll_nats: float, n_bytes: float) -> float:
    """Total loss spread over the UTF-8 bytes of the text, so tokenizers compare fairly."""
    return float(total_nll_nats) / _count(n_bytes, "byte count") / LN2


def bits_per_character(total_nll_nats: float, n_chars: float) -> float:
    """Total loss spread over the characters of the text (text8's and PTB-char's metric)."""
    return float(total_nll_nats) / _count(n_chars, "character count") / LN2


def word_level_perplexity(total_nll_nats: float, n_words: float) -> float:
    """Perplexity per word of a text scored in any tokenization.

    GPT-2 reports WikiText and PTB this way: the summed token-level loss of the text is
    divided by the number of words of the original word-level text (not the number of
    subword tokens), which makes models with different tokenizers comparable.
    """
    return _exp(float(total_nll_nats) / _count(n_words, "word count"))
