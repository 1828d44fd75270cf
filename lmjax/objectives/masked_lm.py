"""Masked language modelling: the BERT objective (Devlin et al. 2018, section 3.1 and A.1).

Of the non-special tokens of an example, `mask_prob` (15%) are selected for prediction; a
selected token becomes [MASK] 80% of the time, a random ordinary token 10% and stays as it
is 10%. Loss and accuracy count selected positions only; as in BERT's own code, the
example lists those positions (`masked_positions`) and the model computes its MLM head
there alone, which saves most of the vocabulary projection. With whole-word masking, words
are selected whole (BERT's `create_masked_lm_predictions`: shuffle the words, take each
that still fits the budget). Optionally each example is a sentence pair for BERT's
next-sentence prediction. Everything is numpy in the data pipeline, driven by the
per-example generator, so it is deterministic for a seed and resumable.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.objectives.base import Batch
from lmjax.objectives.causal_lm import token_cross_entropy

MASK_RATE = 0.8  # of the selected tokens; RANDOM_RATE become random tokens, the rest stay
RANDOM_RATE = 0.1
NOT_NEXT = 1  # next-sentence label: 0 means segment B continues segment A


@dataclasses.dataclass(frozen=True, eq=False)
class MaskedLM:
    """`vocab_size` is the tokenizer's: random replacements are drawn from its ordinary ids.

    `cls_id`/`sep_id` (-1 if the tokenizer has none) frame each example as
    [CLS] tokens [SEP] or, with `nsp`, [CLS] A [SEP] B [SEP]. `joins_left[id]` says a token
    can continue the word before it and `joins_right[id]` that it can be continued; whole-word
    masking needs both tables (see `word_tables`).
    """

    mask_id: int
    vocab_size: int
    special_ids: tuple[int, ...]
    pad_id: int = -1
    cls_id: int = -1
    sep_id: int = -1
    mask_prob: float = 0.15
    nsp: bool = False
    joins_left: np.ndarray | None = None
    joins_right: np.ndarray | None = None
    name: str = "masked_lm"
    window_overlap: int = 0

    @property
    def loss_name(self) -> str:
        return "mlm_nsp_loss" if self.nsp else "mlm_loss"

    @property
    def whole_word(self) -> bool:
        return self.joins_left is not None

    @property
    def framed(self) -> bool:
        return self.cls_id >= 0 and self.sep_id >= 0

    @functools.cached_property
    def _special_table(self) -> np.ndarray:
        table = np.zeros(max(self.vocab_size, *self.special_ids, self.mask_id, self.pad_id) + 1, bool)
        table[[*self.special_ids, self.mask_id]] = True
        if self.pad_id >= 0:
            table[self.pad_id] = True
        return table

    @functools.cached_property
    def _ordinary_ids(self) -> np.ndarray:
        return np.flatnonzero(~self._special_table[: self.vocab_size]).astype(np.int32)

    def window_length(self, seq_len: int) -> int:
        """Corpus tokens per example: room for the framing tokens, and with NSP a second
        segment's worth of text from which a not-next segment B is taken."""
        content = seq_len - self._framing_tokens()
        return 2 * content if self.nsp else content

    def _framing_tokens(self) -> int:
        if not self.framed:
            return 0
        return 3 if self.nsp else 2

    def make_example(self, window: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        window = np.asarray(window, dtype=np.int32)
        seq_len = self._seq_len(len(window))
        if self.nsp:
            ids, types, nsp_label = self._sentence_pair(window, rng)
        else:
            ids, types, nsp_label = self._frame(window[window != self.pad_id]), None, None
        length = len(ids)
        input_ids = np.full(seq_len, max(self.pad_id, 0), np.int32)
        input_ids[:length] = ids
        selected = self._select(input_ids, length, rng)
        predictions = self.max_predictions(seq_len)
        positions = np.flatnonzero(selected)
        example = {
            "input_ids": self._corrupt(input_ids, selected, rng),
            "attention_mask": (np.arange(seq_len) < length).astype(np.int32),
            "token_type_ids": np.zeros(seq_len, np.int32) if types is None
            else np.pad(types, (0, seq_len - length)).astype(np.int32),
            "masked_positions": np.pad(positions, (0, predictions - len(positions))).astype(np.int32),
            "targets": np.pad(input_ids[positions], (0, predictions - len(positions))).astype(np.int32),
            "weights": (np.arange(predictions) < len(positions)).astype(np.float32),
        }
        if self.nsp:
            example["nsp_label"] = np.int32(nsp_label)
            example["nsp_weight"] = np.float32(length > 0)
        return example

    def max_predictions(self, seq_len: int) -> int:
        """Positions an example can select (BERT's max_predictions_per_seq): the targets and
        weights have this length, and the model computes MLM logits at these positions only."""
        return max(1, int(round((seq_len - self._framing_tokens()) * self.mask_prob)))

    def _seq_len(self, window_length: int) -> int:
        content = window_length // 2 if self.nsp else window_length
        return content + self._framing_tokens()

    def _frame(self, tokens: np.ndarray) -> np.ndarray:
        if not self.framed or not len(tokens):
            return tokens
        return np.concatenate([[self.cls_id], tokens, [self.sep_id]])

    def _sentence_pair(self, window: np.ndarray, rng: np.random.Generator):
        """Segment A, then either the text that follows it or (half the time) text from the
        window's second half, which does not follow it. A pair whose second half is
        padding (the corpus's final window) keeps its true continuation."""
        content = len(window) // 2
        split = int(rng.integers(1, content))
        not_next = bool(rng.random() < 0.5) and not np.any(window[content:] == self.pad_id)
        first = window[:split]
        second = window[content + split:] if not_next else window[split:content]
        first, second = first[first != self.pad_id], second[second != self.pad_id]
        if self.framed and len(first):
            first = np.concatenate([[self.cls_id], first, [self.sep_id]])
        if self.framed and len(second):
            second = np.concatenate([second, [self.sep_id]])
        types = np.concatenate([np.zeros(len(first)), np.ones(len(second))])
        return np.concatenate([first, second]).astype(np.int32), types, int(not_next)

    def _select(self, ids: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
        """Boolean mask of the positions to predict: mask_prob of the candidates, whole words
        at a time where enabled, never a special token or padding."""
        candidate = ~self._special_table[ids]
        candidate[length:] = False
        positions = np.flatnonzero(candidate)
        selected = np.zeros(len(ids), bool)
        if not len(positions):
            return selected
        budget = max(1, int(round(len(positions) * self.mask_prob)))
        words = self._words(ids, positions)
        taken = 0
        for word in rng.permutation(len(words)):
            if taken >= budget:
                break
            if taken + len(words[word]) > budget:
                continue
            selected[words[word]] = True
            taken += len(words[word])
        return selected

    def _words(self, ids: np.ndarray, positions: np.ndarray) -> list[np.ndarray]:
        """Candidate positions grouped into words (single tokens without whole-word masking)."""
        if not self.whole_word:
            return np.split(positions, np.arange(1, len(positions)))
        tokens = ids[positions]
        glued = (
            (np.diff(positions) == 1)
            & self.joins_right[tokens[:-1]]
            & self.joins_left[tokens[1:]]
        )
        return np.split(positions, np.flatnonzero(~glued) + 1)

    def _corrupt(self, ids: np.ndarray, selected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """80% [MASK], 10% a random ordinary token, 10% unchanged, per selected position."""
        positions = np.flatnonzero(selected)
        draw = rng.random(len(positions))
        random_ids = rng.choice(self._ordinary_ids, len(positions))
        corrupted = ids.copy()
        corrupted[positions] = np.where(
            draw < MASK_RATE, self.mask_id,
            np.where(draw >= MASK_RATE + RANDOM_RATE, random_ids, ids[positions]),
        )
        return corrupted

    def model_inputs(self, batch: Batch) -> dict[str, Any]:
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "token_type_ids": batch["token_type_ids"],
            "masked_positions": batch["masked_positions"],
        }

    def loss(self, logits: Any, batch: Batch) -> tuple[jax.Array, jax.Array, dict]:
        """Summed MLM loss over the selected positions (logits B×P×V at `masked_positions`);
        with NSP, plus the mean next-sentence loss
        weighted by the number of selected tokens, so that loss/tokens = mlm + nsp means."""
        mlm_BTV, nsp_B2 = logits if self.nsp else (logits, None)
        weights_BT = batch["weights"]
        nll_BT = token_cross_entropy(mlm_BTV, batch["targets"])
        correct_BT = (jnp.argmax(mlm_BTV, axis=-1) == batch["targets"]) * weights_BT
        mlm_sum, tokens = (nll_BT * weights_BT).sum(), weights_BT.sum()
        metrics = {"accuracy": correct_BT.sum()}
        if not self.nsp:
            return mlm_sum, tokens, metrics
        example_weight_B = batch["nsp_weight"]
        examples = jnp.maximum(example_weight_B.sum(), 1.0)
        nsp_nll_B = token_cross_entropy(nsp_B2[:, None], batch["nsp_label"][:, None])[:, 0]
        nsp_correct_B = jnp.argmax(nsp_B2, axis=-1) == batch["nsp_label"]
        nsp_loss = (nsp_nll_B * example_weight_B).sum() / examples
        metrics.update(
            mlm_loss=mlm_sum,
            nsp_loss=nsp_loss * tokens,
            nsp_accuracy=(nsp_correct_B * example_weight_B).sum() / examples * tokens,
        )
        return mlm_sum + nsp_loss * tokens, tokens, metrics


def word_tables(kind: str, pieces: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(joins_left, joins_right) per id from each id's text: WordPiece marks word-interior
    pieces with "##"; byte-level BPE and SentencePiece put the space before a word on its
    first piece, so a piece that starts with a letter or digit continues a word that the
    previous piece did not end with a space or punctuation."""
    if kind == "wordpiece":
        return np.array([p.startswith("##") for p in pieces]), np.ones(len(pieces), bool)
    joins_left = np.array([p[:1].isalnum() for p in pieces])
    joins_right = np.array([p[-1:].isalnum() for p in pieces])
    return joins_left, joins_right
