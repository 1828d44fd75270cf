"""Generation for the T5 encoder-decoder: the encoder runs once per batch of prompts, the first
decoder step projects every layer's cross-attention keys and values from its output, and each
later step reuses them beside a fixed-size self-attention cache.

Prompts (the encoder inputs) of different lengths are right-padded with an attention mask,
which hides the padding from the encoder and from cross-attention. The result of each row is
the decoder's ids after `decoder_start_id`, as transformers' `generate` returns them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.decoding.prompts import Prompts, StopTracker, pad, prompt_rows, rows_until_stop
from lmjax.decoding.sampling import Sampling, sample
from lmjax.models.t5 import init_cache


class T5Generator:
    """One T5's compiled prefill (encoder and first decoder step), cached step and uncached
    step for one sampling rule; build once, call `generate` many times."""

    def __init__(self, model: nn.Module, params: Any, sampling: Sampling = Sampling(),
                 vocab_size: int | None = None, decoder_start_id: int = 0) -> None:
        self.model = model
        self.config = model.config
        self.params = jax.tree.map(jnp.asarray, params)
        self.sampling = sampling
        self.vocab_size = vocab_size or self.config.vocab_size
        self.decoder_start_id = decoder_start_id
        self._prefill = jax.jit(self._prefill_fn, static_argnums=(4,))
        self._advance = jax.jit(self._advance_fn, donate_argnums=(1,))
        self._encode = jax.jit(self._encode_fn)
        self._recompute = jax.jit(self._recompute_fn, donate_argnums=(3,))

    def generate(
        self,
        prompts: Prompts,
        max_new_tokens: int,
        seed: int = 0,
        stop_ids: Collection[int] = (),
        use_cache: bool = True,
    ) -> list[list[int]]:
        """Decoder ids for each prompt (one list of encoder ids, a list of lists of any
        lengths, or a B×T array), at most `max_new_tokens`, each row ending before its first
        stop id (T5's EOS is 1)."""
        rows = prompt_rows(prompts, self.config.vocab_size)
        if max_new_tokens <= 0:
            return [[] for _ in rows]
        ids_BS, mask_BS = (jnp.asarray(array) for array in pad(rows, left=False))
        key = jax.random.PRNGKey(seed)
        run = self._run_cached if use_cache else self._run_uncached
        tokens_NB = run(ids_BS, mask_BS, max_new_tokens, key, stop_ids)
        return rows_until_stop(tokens_NB, [max_new_tokens] * len(rows), stop_ids)

    def _run_cached(self, ids_BS, mask_BS, n_new, key, stop_ids) -> list[np.ndarray]:
        batch = ids_BS.shape[0]
        stops = StopTracker(batch, stop_ids)
        start_B1 = jnp.full((batch, 1), self.decoder_start_id, jnp.int32)
        token_B, encoded_BSD, cache = self._prefill(self.params, ids_BS, mask_BS, start_B1, n_new,
                                                    key)
        tokens = [token_B]
        for i in range(1, n_new):
            if stops.all_stopped(token_B):
                break
            token_B, cache = self._advance(self.params, cache, encoded_BSD, mask_BS,
                                           token_B[:, None], key, i)
            tokens.append(token_B)
        return [np.asarray(token_B) for token_B in tokens]

    def _run_uncached(self, ids_BS, mask_BS, n_new, key, stop_ids) -> list[np.ndarray]:
        """The encoder once, then the whole decoder buffer for every token."""
        batch = ids_BS.shape[0]
        stops = StopTracker(batch, stop_ids)
        encoded_BSD = self._encode(self.params, ids_BS, mask_BS)
        ids_BL = jnp.full((batch, n_new), self.decoder_start_id, jnp.int32)
        tokens = []
        for i in range(n_new):
            if tokens and stops.all_stopped(tokens[-1]):
                break
            token_B, ids_BL = self._recompute(self.params, encoded_BSD, mask_BS, ids_BL, i + 1,
                                              key, i)
            tokens.append(token_B)
        return [np.asarray(token_B) for token_B in tokens]

    def _encode_fn(self, params, ids_BS, mask_BS):
        return self.model.apply({"params": params}, ids_BS, mask_BS, method="encode")

    def _prefill_fn(self, params, ids_BS, mask_BS, start_B1, n_new, key):
        """The encoder, then the start token's step, which fills in the cross K/V; the cache
        holds the start token and the n_new - 1 tokens fed after it (the last is never fed)."""
        encoded_BSD = self._encode_fn(params, ids_BS, mask_BS)
        cache = init_cache(self.config, start_B1.shape[0], n_new)
        token_B, cache = self._advance_fn(params, cache, encoded_BSD, mask_BS, start_B1, key, 0)
        return token_B, encoded_BSD, cache

    def _advance_fn(self, params, cache, encoded_BSD, mask_BS, ids_BT, key, i):
        logits_BTV, cache = self.model.apply({"params": params}, ids_BT, encoded_BSD, mask_BS,
                                             cache=cache, method="decode")
        return self._sample(logits_BTV[:, -1], key, i), cache

    def _recompute_fn(self, params, encoded_BSD, mask_BS, ids_BL, length, key, i):
        """Samples the token after the first `length` decoder ids and writes it at `length`
        (dropped past the buffer's end)."""
        logits_BLV = self.model.apply({"params": params}, ids_BL, encoded_BSD, mask_BS,
                                      method="decode")
        logits_BV = jax.lax.dynamic_index_in_dim(logits_BLV, length - 1, axis=1, keepdims=False)
        token_B = self._sample(logits_BV, key, i)
        return token_B, ids_BL.at[:, length].set(token_B, mode="drop")

    def _sample(self, logits_BV, key, i):
        return sample(logits_BV[:, :self.vocab_size], jax.random.fold_in(key, i), self.sampling)
