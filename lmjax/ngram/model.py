"""NGramLM: an order-n Markov language model with the classic estimators.

Conventions (the ones the course uses): each sentence is padded with n-1 `<s>` and, by
default, one `</s>`; `<s>` is context only, never predicted and not in the vocabulary V
that probabilities range over; `</s>` is predicted and counted in N. Tokens seen fewer
than `unk_cutoff` times in training read as `<unk>`, which is always in V.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lmjax import metrics
from lmjax.errors import ConfigError, DataError, LmjaxError
from lmjax.ngram import estimators, storage
from lmjax.ngram.counts import NGramCounts
from lmjax.ngram.vocab import BOS, BOS_ID, EOS, EOS_ID, UNK_ID, Sentence, Vocabulary

SMOOTHINGS = ("mle", "add_k", "laplace", "kneser_ney", "modified_kneser_ney", "backoff")
ALIASES = {"kn": "kneser_ney", "mkn": "modified_kneser_ney", "add-k": "add_k", "lidstone": "add_k"}
DISCOUNTED = ("kneser_ney", "modified_kneser_ney", "backoff")


@dataclass(frozen=True)
class Evaluation:
    """What scoring a text gives: the totals, from which every metric follows."""

    total_nll_nats: float
    n_predicted: int
    n_tokens: int
    n_oov: int

    @property
    def perplexity(self) -> float:
        return metrics.perplexity(self.total_nll_nats, self.n_predicted)

    @property
    def entropy_bits(self) -> float:
        return metrics.entropy(self.total_nll_nats, self.n_predicted, base=2)

    @property
    def oov_rate(self) -> float:
        return self.n_oov / self.n_tokens if self.n_tokens else 0.0


def canonical_smoothing(name: str) -> str:
    """The estimator's full name, accepting the short aliases (kn, mkn, add-k, lidstone)."""
    name = ALIASES.get(name, name)
    if name not in SMOOTHINGS:
        raise ConfigError(f"unknown smoothing {name!r}: choose one of {', '.join(SMOOTHINGS)} (or kn, mkn)")
    return name


class NGramLM:
    """An n-gram language model over any hashable tokens (words, characters, bytes, ids).

    smoothing: 'mle', 'add_k' (k > 0), 'laplace' (k = 1), 'kneser_ney' (interpolated, one
    absolute discount per order), 'modified_kneser_ney' (three discounts per order, always
    estimated) or 'backoff' (absolute-discount backoff with normalised weights).
    discount: for kneser_ney and backoff, in (0, 1); None estimates n1/(n1+2·n2) per order.
    end_symbols: how many `</s>` close each sentence (0: one model per sentence length).
    bos_in_vocab: count `<s>` in V as NLTK does (then it is also in the support).
    """

    def __init__(
        self,
        order: int,
        smoothing: str = "kneser_ney",
        k: float | None = None,
        discount: float | None = None,
        unk_cutoff: int = 1,
        end_symbols: int = 1,
        bos_in_vocab: bool = False,
    ):
        if not isinstance(order, (int, np.integer)) or order < 1:
            raise ConfigError(f"n-gram order must be an integer ≥ 1, got {order!r}")
        self.order = int(order)
        self.smoothing = canonical_smoothing(smoothing)
        self.k = self._check_k(k)
        self.discount = self._check_discount(discount)
        if unk_cutoff < 1:
            raise ConfigError(f"unk_cutoff must be ≥ 1 (1 keeps every token), got {unk_cutoff}")
        if end_symbols < 0:
            raise ConfigError(f"end_symbols must be ≥ 0, got {end_symbols}")
        self.unk_cutoff = int(unk_cutoff)
        self.end_symbols = int(end_symbols)
        self.bos_in_vocab = bool(bos_in_vocab)
        self.meta: dict = {}
        self.vocab: Vocabulary | None = None
        self.table: NGramCounts | None = None

    @classmethod
    def nltk_compatible(cls, order: int, smoothing: str = "mle", **kwargs) -> NGramLM:
        """A model with nltk.lm's conventions: n-1 `</s>` per sentence and `<s>` counted in V."""
        return cls(order, smoothing, end_symbols=order - 1, bos_in_vocab=True, **kwargs)

    def _check_k(self, k: float | None) -> float | None:
        if self.smoothing == "laplace":
            if k not in (None, 1):
                raise ConfigError(f"laplace smoothing is add-k with k=1, got k={k}: use smoothing='add_k'")
            return 1.0
        if k is not None and self.smoothing != "add_k":
            raise ConfigError(f"k is only used by add_k smoothing, not {self.smoothing}")
        if self.smoothing != "add_k":
            return None
        if k is None:
            return 1.0
        if not k > 0:
            raise ConfigError(f"add-k needs k > 0, got {k}")
        return float(k)

    def _check_discount(self, discount: float | None) -> float | None:
        if discount is None:
            return None
        if self.smoothing not in ("kneser_ney", "backoff"):
            raise ConfigError(
                f"discount is used by kneser_ney and backoff, not {self.smoothing}"
                + (" (it estimates its three discounts)" if self.smoothing == "modified_kneser_ney" else "")
            )
        if not 0 < discount < 1:
            raise ConfigError(f"discount must lie strictly between 0 and 1, got {discount}")
        return float(discount)

    @property
    def config(self) -> dict:
        """The constructor arguments, as saved with the model."""
        return {
            "order": self.order,
            "smoothing": self.smoothing,
            "k": self.k,
            "discount": self.discount,
            "unk_cutoff": self.unk_cutoff,
            "end_symbols": self.end_symbols,
            "bos_in_vocab": self.bos_in_vocab,
        }

    # --- fitting -------------------------------------------------------------------------

    def fit(self, sentences: Sequence[Sentence]) -> NGramLM:
        """Count every n-gram of the padded sentences and precompute the estimator."""
        sentences = list(sentences)
        if not any(len(s) for s in sentences):
            raise DataError("training text is empty: give at least one sentence with a token in it")
        vocab = Vocabulary.build(sentences, self.unk_cutoff)
        windows = self._windows(vocab, sentences)[0]
        return self._fit_counts(vocab, windows, np.ones(len(windows), dtype=np.int64))

    def _windows(self, vocab: Vocabulary, sentences: Sequence[Sentence]) -> tuple[np.ndarray, int]:
        """One row of n ids per predicted token (history then token), and the OOV count."""
        ids, n_oov = vocab.pad(sentences, self.order - 1, self.end_symbols)
        targets = np.flatnonzero(ids != BOS_ID)
        return sliding_window_view(ids, self.order)[targets - (self.order - 1)], n_oov

    def _fit_counts(self, vocab: Vocabulary, windows: np.ndarray, weights: np.ndarray) -> NGramLM:
        self.vocab = vocab
        self.table = NGramCounts(windows, weights, len(vocab))
        self._support = self._support_mask()
        self._totals = [np.zeros(0)] + [
            self.table.history_totals(k, self.table.counts[k]) for k in range(1, self.order + 1)
        ]
        if self.smoothing in DISCOUNTED:
            self._probs, self._weights = self._discounted_estimates()
        return self

    def _support_mask(self) -> np.ndarray:
        mask = np.ones(len(self.vocab), dtype=bool)
        mask[BOS_ID] = self.bos_in_vocab
        mask[EOS_ID] = self.end_symbols > 0
        return mask

    def _discounted_estimates(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        table, support = self.table, int(self._support.sum())
        modified = self.smoothing == "modified_kneser_ney"
        discounts = [np.zeros(3)]
        for k in range(1, self.order + 1):
            if self.discount is not None:
                discounts.append(np.full(3, self.discount))
            else:
                counts = table.counts[k] if self.smoothing == "backoff" else estimators.kn_counts(table, k)
                discounts.append(estimators.estimate_discounts(counts, modified))
        self.discounts = discounts
        if self.smoothing == "backoff":
            return estimators.absolute_discount_backoff(table, support, discounts)
        return estimators.kneser_ney(table, support, discounts)

    # --- scoring -------------------------------------------------------------------------

    def _require_fitted(self) -> None:
        if self.table is None:
            raise LmjaxError("the n-gram model has not been fitted: call fit(sentences) or load a saved model")

    def _context_ids(self, context: Sequence[Hashable]) -> np.ndarray:
        context = list(context)
        context = context[max(0, len(context) - (self.order - 1)) :]
        return np.array([BOS_ID if t == BOS else self.vocab.index.get(t, UNK_ID) for t in context], dtype=np.int64)

    def _word_id(self, word: Hashable) -> int:
        if word == BOS:
            index = BOS_ID
        elif word == EOS:
            index = EOS_ID
        else:
            index = self.vocab.index.get(word, UNK_ID)
        if not self._support[index]:
            raise LmjaxError(f"{word} is not in the model's vocabulary of predicted symbols: it is never predicted")
        return index

    def _log_probs(self, contexts: np.ndarray, words: np.ndarray, allow_zero: bool) -> np.ndarray:
        """Natural-log probabilities of words given same-length contexts of ids."""
        histories = self.table.lookup_histories(contexts)
        events = self.table.lookup_events(histories, words)
        if self.smoothing in DISCOUNTED:
            return self._log_probs_discounted(histories, events)
        top = contexts.shape[1] + 1
        seen = events[top] >= 0
        counts = np.where(seen, self.table.counts[top][np.maximum(events[top], 0)], 0)
        history = histories[top - 1]
        total = np.where(history >= 0, self._totals[top][np.maximum(history, 0)], 0)
        if self.smoothing == "mle":
            if not allow_zero and not seen.all():
                self._raise_unseen(contexts, words, seen)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(seen, np.log(counts / np.maximum(total, 1)), -np.inf)
        return np.log((counts + self.k) / (total + self.k * self._support.sum()))

    def _log_probs_discounted(self, histories: list[np.ndarray], events: list[np.ndarray]) -> np.ndarray:
        """Walk down from the longest context: a seen event ends the walk, an unseen one in a
        seen history picks up that history's weight."""
        m = len(histories[0])
        log_p = np.zeros(m)
        done = np.zeros(m, dtype=bool)
        with np.errstate(divide="ignore"):
            for k in range(len(events) - 1, 0, -1):
                seen = (events[k] >= 0) & ~done
                log_p[seen] += np.log(self._probs[k][events[k][seen]])
                done |= seen
                backing_off = (histories[k - 1] >= 0) & ~done
                log_p[backing_off] += np.log(self._weights[k][histories[k - 1][backing_off]])
        log_p[~done] -= math.log(self._support.sum())
        return log_p

    def _raise_unseen(self, contexts: np.ndarray, words: np.ndarray, seen: np.ndarray) -> None:
        i = int(np.flatnonzero(~seen)[0])
        gram = " ".join(str(self.vocab.tokens[t]) for t in [*contexts[i], words[i]])
        raise LmjaxError(
            f"MLE gives probability 0 to the unseen {contexts.shape[1] + 1}-gram '{gram}': "
            "use a smoothed estimator, or allow zero probabilities (allow_zero=True, --allow-zero) "
            "for an infinite perplexity"
        )

    def prob(self, word: Hashable, context: Sequence[Hashable] = (), allow_zero: bool = False) -> float:
        """p(word | context); `<s>` in the context stands for the start padding.

        A context shorter than n-1 tokens is answered by the lower-order model of its length.
        """
        self._require_fitted()
        log_p = self._log_probs(self._context_ids(context)[None, :], np.array([self._word_id(word)]), allow_zero)
        return float(np.exp(log_p[0]))

    def evaluate(self, sentences: Sequence[Sentence], allow_zero: bool = False) -> Evaluation:
        """Score every predicted symbol of the padded sentences (each `</s>` included)."""
        self._require_fitted()
        sentences = list(sentences)
        windows, n_oov = self._windows(self.vocab, sentences)
        if len(windows) == 0:
            raise DataError("evaluation text is empty: give at least one sentence")
        log_p = self._log_probs(windows[:, :-1], windows[:, -1], allow_zero)
        n_tokens = sum(len(s) for s in sentences)
        return Evaluation(float(-log_p.sum()), len(windows), n_tokens, n_oov)

    def logprob(self, sentence: Sentence, allow_zero: bool = False) -> float:
        """Natural log of p(sentence), the product over its padded predictions."""
        return -self.evaluate([sentence], allow_zero).total_nll_nats

    def perplexity(self, sentences: Sequence[Sentence], allow_zero: bool = False) -> float:
        """p(text)^(-1/N), N the number of predicted symbols (`</s>` included)."""
        return self.evaluate(sentences, allow_zero).perplexity

    def entropy(self, sentences: Sequence[Sentence], base: float = 2, allow_zero: bool = False) -> float:
        """Cross-entropy per predicted symbol, log perplexity in the given base."""
        e = self.evaluate(sentences, allow_zero)
        return metrics.entropy(e.total_nll_nats, e.n_predicted, base)

    def save(self, path: str) -> None:
        """Write the model as plain JSON (see lmjax.ngram.storage)."""
        storage.save(self, path)

    @staticmethod
    def load(path: str) -> NGramLM:
        """Read a model written by save."""
        saved = storage.read(path)
        model = NGramLM(**saved.config)
        model.meta = saved.meta
        return model._fit_counts(saved.vocab, saved.ngrams, saved.counts)

    # --- inspection and sampling ---------------------------------------------------------

    def support(self) -> list[Hashable]:
        """The symbols probabilities range over: V (with `<unk>`) and `</s>`."""
        self._require_fitted()
        return [t for t, keep in zip(self.vocab.tokens, self._support) if keep]

    def _event_index(self, ngram: Sequence[Hashable]) -> int:
        if not 1 <= len(ngram) <= self.order:
            raise LmjaxError(f"the model counts n-grams of 1 to {self.order} tokens, got {len(ngram)}")
        ids = self._context_ids(list(ngram)[:-1])
        histories = self.table.lookup_histories(ids[None, :])
        return int(self.table.lookup_events(histories, np.array([self._word_id(ngram[-1])]))[len(ngram)][0])

    def count(self, ngram: Sequence[Hashable]) -> int:
        """How many times the n-gram was predicted in training (its last token as the event)."""
        self._require_fitted()
        index = self._event_index(ngram)
        return int(self.table.counts[len(ngram)][index]) if index >= 0 else 0

    def continuation_count(self, ngram: Sequence[Hashable]) -> int:
        """N1+(• ngram): how many distinct tokens preceded the n-gram (lower orders only)."""
        self._require_fitted()
        if not 1 <= len(ngram) < self.order:
            raise LmjaxError(f"continuation counts exist for orders 1..{self.order - 1}, got {len(ngram)} tokens")
        index = self._event_index(ngram)
        return int(self.table.continuation_counts(len(ngram))[index]) if index >= 0 else 0

    def distribution(self, context: Sequence[Hashable] = ()) -> np.ndarray:
        """p(· | context) over all ids (zero outside the support), for sampling."""
        self._require_fitted()
        ids = self._context_ids(context)
        words = np.flatnonzero(self._support)
        contexts = np.broadcast_to(ids, (len(words), len(ids)))
        p = np.zeros(len(self.vocab))
        p[words] = np.exp(self._log_probs(contexts, words, allow_zero=True))
        return p

    def generate(self, seed: int | None = None, max_len: int = 100, context: Sequence[Hashable] = ()) -> list:
        """Sample a sentence after the start padding, stopping at `</s>` or after max_len tokens."""
        self._require_fitted()
        rng = np.random.default_rng(seed)
        history = [BOS] * (self.order - 1) + list(context)
        out: list = []
        while len(out) < max_len:
            p = self.distribution(history)
            if not p.sum() > 0:
                raise LmjaxError("MLE has no continuation for this context: use a smoothed estimator to sample")
            token = self.vocab.tokens[rng.choice(len(p), p=p / p.sum())]
            if token == EOS:
                break
            out.append(token)
            history.append(token)
        return out
