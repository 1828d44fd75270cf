"""Span corruption: the T5 objective (Raffel et al. 2019, section 3.1.4), as T5 codes it.

A window of `tokens_length` corpus tokens is split into alternating kept and dropped
spans by `random_spans_noise_mask` (ported from T5's preprocessors, float32 rounding
included): 15% of the tokens are dropped, in spans of mean length 3, and the window always
starts with a kept span and ends with a dropped one. Each dropped span becomes one sentinel
in the inputs, sentinels counting down from the end of the vocabulary; the targets are
each sentinel followed by the span it replaced, then one final sentinel (the paper's
Figure 2; T5's code puts its EOS in that slot). `random_spans_helper` picks
`tokens_length` so that the inputs (kept tokens, sentinels, EOS) fill `seq_len` exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lmjax.errors import ConfigError
from lmjax.objectives.base import Batch
from lmjax.objectives.causal_lm import token_cross_entropy


def noise_counts(length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """(dropped tokens, dropped spans) of a window, each at least one, computed in float32
    and rounded half to even as T5's TensorFlow code does."""
    num_noise = int(np.round(np.float32(length) * np.float32(noise_density)))
    num_noise = min(max(num_noise, 1), length - 1)
    return num_noise, max(int(np.round(np.float32(num_noise) / np.float32(mean_span))), 1)


def _lengths_for(tokens_length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """(inputs length, targets length) of a window of `tokens_length` tokens."""
    num_noise, num_spans = noise_counts(max(tokens_length, 2), noise_density, mean_span)
    return tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1


def random_spans_helper(inputs_length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """T5's `random_spans_helper`: the longest window whose inputs fit `inputs_length`, and
    the length of its targets. T5 counts here in float64 but masks in float32, so at a few
    lengths (190 tokens: 28.5 dropped) its targets overflow the length it computed; counting
    as the mask does keeps every example exactly `inputs_length` + `targets_length` long."""
    tokens_length = inputs_length - 1
    while _lengths_for(tokens_length + 1, noise_density, mean_span)[0] <= inputs_length:
        tokens_length += 1
    return tokens_length, _lengths_for(tokens_length, noise_density, mean_span)[1]


def sentinels_needed(seq_len: int, noise_density: float, mean_span: float) -> int:
    """Sentinels one example can use: one per dropped span plus the final one."""
    tokens_length, _ = random_spans_helper(seq_len, noise_density, mean_span)
    return noise_counts(max(tokens_length, 2), noise_density, mean_span)[1] + 1


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of a uniformly random split of `num_items` into `num_segments` non-empty parts."""
    first_in_segment = np.pad(rng.permutation(np.arange(num_items - 1) < num_segments - 1), (1, 0))
    return np.bincount(np.cumsum(first_in_segment), minlength=num_segments)


def random_spans_noise_mask(length: int, noise_density: float, mean_span: float,
                            rng: np.random.Generator) -> np.ndarray:
    """T5's `random_spans_noise_mask` (without random roll): True where a token is dropped."""
    orig_length = length
    length = max(length, 2)
    num_noise, num_spans = noise_counts(length, noise_density, mean_span)
    noise_lengths = _random_segmentation(num_noise, num_spans, rng)
    kept_lengths = _random_segmentation(length - num_noise, num_spans, rng)
    interleaved = np.stack([kept_lengths, noise_lengths], axis=1).reshape(-1)
    span_start = np.zeros(length, np.int32)
    span_start[np.cumsum(interleaved)[:-1]] = 1
    return (np.cumsum(span_start) % 2 == 1)[:orig_length]


def replace_spans(tokens: np.ndarray, spans: np.ndarray, sentinel_0: int) -> np.ndarray:
    """T5's `noise_span_to_unique_sentinel`: each run of `spans` becomes one sentinel,
    the i-th being `sentinel_0 - i`."""
    starts = spans & ~np.pad(spans[:-1], (1, 0))
    sentinels = sentinel_0 + 1 - np.cumsum(starts)
    replaced = np.where(starts, sentinels, tokens)
    return replaced[~spans | starts].astype(np.int32)


@dataclasses.dataclass(frozen=True)
class SpanCorruption:
    """`seq_len` is the encoder's input length; sentinels are `vocab_end - 1`, `vocab_end - 2`,
    ...; the decoder starts from `pad_id`, as T5's decoder_start_token_id does."""

    seq_len: int
    vocab_end: int
    eos_id: int
    pad_id: int
    noise_density: float = 0.15
    mean_noise_span_length: float = 3.0
    name: str = "span_corruption"
    loss_name: str = "span_loss"
    window_overlap: int = 0

    @functools.cached_property
    def _lengths(self) -> tuple[int, int]:
        return random_spans_helper(self.seq_len, self.noise_density, self.mean_noise_span_length)

    @property
    def tokens_length(self) -> int:
        return self._lengths[0]

    @property
    def targets_length(self) -> int:
        return self._lengths[1]


    def window_length(self, seq_len: int) -> int:
        if seq_len != self.seq_len:
            raise ConfigError(f"this span-corruption objective was built for seq_len={self.seq_len}, "
                              f"not {seq_len}")
        return self.tokens_length

    def make_example(self, window: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        tokens = np.asarray(window, dtype=np.int32)
        tokens = tokens[tokens != self.pad_id]
        inputs, targets = self.corrupt(tokens, rng)
        decoder_inputs = np.concatenate([[self.pad_id], targets[:-1]])
        return {
            "input_ids": self._pad(inputs, self.seq_len),
            "attention_mask": self._pad(np.ones_like(inputs), self.seq_len, 0),
            "decoder_input_ids": self._pad(decoder_inputs, self.targets_length),
            "decoder_attention_mask": self._pad(np.ones_like(targets), self.targets_length, 0),
            "targets": self._pad(targets, self.targets_length, 0),
            "weights": self._pad(np.ones_like(targets), self.targets_length, 0).astype(np.float32),
        }

    def corrupt(self, tokens: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) for a run of real tokens; nothing for an empty one (padding)."""
        if not len(tokens):
            return np.zeros(0, np.int32), np.zeros(0, np.int32)
        noise = random_spans_noise_mask(len(tokens), self.noise_density,
                                        self.mean_noise_span_length, rng)
        sentinel_0 = self.vocab_end - 1
        inputs = np.concatenate([replace_spans(tokens, noise, sentinel_0), [self.eos_id]])
        kept = ~noise
        final_sentinel = sentinel_0 - int(np.sum(kept & ~np.pad(kept[:-1], (1, 0))))
        targets = np.concatenate([replace_spans(tokens, kept, sentinel_0), [final_sentinel]])
        return inputs.astype(np.int32), targets.astype(np.int32)

    def _pad(self, values: np.ndarray, length: int, fill: int | None = None) -> np.ndarray:
        fill = self.pad_id if fill is None else fill
        return np.pad(values, (0, length - len(values)), constant_values=fill).astype(np.int32)

    def model_inputs(self, batch: Batch) -> dict[str, Any]:
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "decoder_input_ids": batch["decoder_input_ids"],
            "decoder_attention_mask": batch["decoder_attention_mask"],
        }

    def loss(self, logits_BTV: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array, dict]:
        weights_BT = batch["weights"]
        nll_BT = token_cross_entropy(logits_BTV, batch["targets"])
        correct_BT = (jnp.argmax(logits_BTV, axis=-1) == batch["targets"]) * weights_BT
        return (nll_BT * weights_BT).sum(), weights_BT.sum(), {"accuracy": correct_BT.sum()}
