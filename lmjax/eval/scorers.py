"""Summed log-probabilities of continuations given contexts, for each architecture, jitted.

Scorers see token ids only; turning text into ids, and deciding which tasks a model can
answer, is the model adapter's part (`lmjax.eval.adapters`).

Every scorer takes (context ids, continuation ids) pairs and returns, per pair, the summed
log-probability of the continuation in nats and whether greedy decoding would have produced
it (the harness's `(logprob, is_greedy)`):

- `CausalScorer` (GPT): context + continuation in one row, the last `max_len + 1` tokens
  kept (the harness's left truncation), right-padded; only the positions that predict the
  continuation go through the output layer.
- `Seq2SeqScorer` (T5): the context is the encoder's input, the continuation the decoder's
  targets after the decoder start id (the harness's seq2seq backend).
- `PseudoLogLikelihoodScorer` (BERT): Salazar et al. (2020): each continuation token is
  masked in turn, the rest of context and continuation visible, and its log-probability at
  the mask summed; "greedy" means every masked position's argmax is the token (mask filling).

Rows are bucketed to a few fixed shapes (`lmjax.eval.batching`), so a task compiles a
handful of programs; a task's last, partial batch runs at the smallest power-of-two number of
rows that holds it. On a mesh the batch is sharded over its data axes as in training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

from lmjax import parallel
from lmjax.config import Config
from lmjax.errors import DataError
from lmjax.eval import multihost
from lmjax.eval.batching import batch_rows, bucket_for, buckets, longest_first, pad_rows
from lmjax.models.attention import ATTENTION_TILE
from lmjax.models.layers import constrain

Pair = tuple[Sequence[int], Sequence[int]]
Score = tuple[float, bool]
Progress = Callable[[int], None]


def params_mesh(params: Any) -> Mesh | None:
    """The mesh the parameters live on (None for one device)."""
    sharding = getattr(jax.tree.leaves(params)[0], "sharding", None)
    return sharding.mesh if isinstance(sharding, NamedSharding) else None


class Scorer:
    """Shared batching: subclasses turn pairs into fixed-shape arrays (`fields`: name ->
    dtype, all B×T) and score a batch."""

    fields: dict[str, Any] = {}

    def __init__(self, model: nn.Module, params: Any, config: Config, batch_size: int = 8):
        self.model, self.params, self.config = model, params, config
        self.max_len = config.model.max_len
        self.buckets = buckets(self.max_len)
        self.mesh = params_mesh(params)
        self.shards = parallel.data_parallel_size(self.mesh) if self.mesh is not None else 1
        self.batch_size = -(-batch_size // self.shards) * self.shards
        self._score_batch = jax.jit(self._score_fn)

    def score(self, pairs: Sequence[Pair], progress: Progress | None = None) -> list[Score]:
        """(summed log-probability, is greedy) per pair, in the order given."""
        rows = [self.row(context, continuation) for context, continuation in pairs]
        results: list[Score | None] = [None] * len(rows)
        for chunk in longest_first([self.length(row) for row in rows], self.batch_size):
            batch = self.arrays([rows[i] for i in chunk])
            totals, greedy = jax.device_get(self._run(batch))
            for slot, i in enumerate(chunk):
                results[i] = (float(totals[slot]), bool(greedy[slot]))
            if progress is not None:
                progress(len(chunk))
        return results  # type: ignore[return-value]

    def _run(self, batch: dict[str, np.ndarray]) -> tuple[jax.Array, jax.Array]:
        """One scoring call; on several hosts process 0 first sends the batch to the others."""
        if self.mesh is None:
            return self._score_batch(self.params, batch)
        if multihost.multi_process():
            multihost.send(batch, self.fields)
        return self._run_on_mesh(batch)

    def _run_on_mesh(self, batch: dict[str, np.ndarray]) -> tuple[jax.Array, jax.Array]:
        """Every process holds the whole batch; each places its own devices' rows."""
        sharding = parallel.batch_sharding(self.mesh)
        placed = {key: jax.make_array_from_callback(value.shape, sharding, lambda index, v=value: v[index])
                  for key, value in batch.items()}
        with parallel.activate(self.mesh, parallel.axis_rules(self.config.mesh)):
            totals, greedy = self._score_batch(self.params, placed)
            return (to_host(totals), to_host(greedy))

    def follow(self) -> int:
        """On processes other than 0: run process 0's batches until it ends the work."""
        return multihost.follow(self.fields, self._run_on_mesh)

    def end_followers(self) -> None:
        """On process 0 of several: tell the others the work is done."""
        if self.mesh is not None and multihost.multi_process():
            multihost.send(None, self.fields)

    def bucket(self, length: int) -> int:
        return bucket_for(max(length, 1), self.buckets)

    def rows_for(self, n_rows: int) -> int:
        """Rows of the batch array for `n_rows` requests: the full batch, or fewer for a
        task's last, partial batch (a padded row costs as much as a real one)."""
        return batch_rows(n_rows, self.batch_size, self.shards)

    def row(self, context: Sequence[int], continuation: Sequence[int]) -> Any:
        raise NotImplementedError

    def length(self, row: Any) -> int:
        raise NotImplementedError

    def arrays(self, rows: list[Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _score_fn(self, params: Any, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError


def to_host(array: jax.Array) -> np.ndarray:
    """A batch-sharded result as one host array on every process."""
    if array.is_fully_addressable:
        return np.asarray(array)
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def target_scores(logits_BTV: jax.Array, targets_BT: jax.Array,
                  weights_BT: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per row: summed log-probability of the weighted targets, and whether each is the argmax.
    The target's logit minus the logsumexp, and "greedy" as target logit >= the maximum, are
    reductions XLA fuses: no B×T×V log-softmax is written (timings: docs/evaluation.md)."""
    target_BT = jnp.take_along_axis(logits_BTV, targets_BT[..., None], axis=-1)[..., 0]
    logprob_BT = target_BT - jax.nn.logsumexp(logits_BTV, axis=-1)
    hits_BT = (target_BT >= logits_BTV.max(axis=-1)) | (weights_BT == 0)
    return (logprob_BT * weights_BT).sum(axis=1), hits_BT.all(axis=1)


def check_continuation(continuation: Sequence[int], limit: int) -> None:
    if not continuation:
        raise DataError("a continuation encodes to no tokens: every request must score at least one token")
    if len(continuation) > limit:
        raise DataError(
            f"a continuation of {len(continuation)} tokens does not fit the model's context of "
            f"{limit}: shorten it or use a task with a rolling window (loglikelihood_rolling)"
        )


INT, FLOAT = np.int32, np.float32


class CausalScorer(Scorer):
    """GPT: one right-padded row per pair; the continuation's tokens are the scored targets.

    Two savings, both exact: right padding is invisible to causal attention (a real token
    never attends to a later slot), so rows need no attention mask and attention takes the
    blocked causal path that skips fully masked blocks (tiles of `ATTENTION_TILE`
    queries and keys); and only a span of `S` positions per row (a bucket of the longest
    continuation in the batch) goes through the output layer, as transformers'
    `logits_to_keep` does, since the B×T×V logits GEMM is a quarter of a GPT-2-small forward
    and a short continuation needs a few of its rows. `starts` (B×1): where each span begins.
    """

    fields = {"ids": INT, "starts": INT, "targets": INT, "weights": FLOAT}

    def row(self, context: Sequence[int], continuation: Sequence[int]) -> tuple[list[int], int]:
        check_continuation(continuation, self.max_len)
        if not context:
            raise DataError("a causal model predicts a token from the ones before it: give every "
                            "continuation a context (the start-of-text token for none)")
        whole = [*context, *continuation][-(self.max_len + 1):]
        return whole, len(continuation)

    def length(self, row: tuple[list[int], int]) -> int:
        return len(row[0]) - 1

    def arrays(self, rows: list[tuple[list[int], int]]) -> dict[str, np.ndarray]:
        length = self.bucket(max(self.length(row) for row in rows))
        span = min(self.bucket(max(n_scored for _, n_scored in rows)), length)
        n_rows = self.rows_for(len(rows))
        ids, _ = pad_rows([whole[:-1] for whole, _ in rows], n_rows, length)
        targets_full, _ = pad_rows([whole[1:] for whole, _ in rows], n_rows, length)
        starts = np.zeros((n_rows, 1), np.int32)
        targets = np.zeros((n_rows, span), np.int32)
        weights = np.zeros((n_rows, span), np.float32)
        for i, (whole, n_scored) in enumerate(rows):
            end = len(whole) - 1
            start = min(max(end - span, 0), length - span)
            starts[i, 0] = start
            targets[i] = targets_full[i, start:start + span]
            weights[i, end - n_scored - start:end - start] = 1.0
        return {"ids": ids, "starts": starts, "targets": targets, "weights": weights}

    def _score_fn(self, params: Any, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        length, span = batch["ids"].shape[1], batch["targets"].shape[1]
        hidden_BTD, weights_DV = self.model_for(length).apply(
            {"params": params}, batch["ids"], output_hidden=True)
        if span < length:
            index_BS = batch["starts"] + jnp.arange(span)
            hidden_BTD = jnp.take_along_axis(hidden_BTD, index_BS[..., None], axis=1)
        logits_BSV = jnp.einsum("bsd,dv->bsv", hidden_BTD, weights_DV).astype(jnp.float32)
        logits_BSV = constrain(logits_BSV, ("batch", "length", "vocab"))
        return target_scores(logits_BSV, batch["targets"], batch["weights"])

    def model_for(self, length: int) -> nn.Module:
        """The model with causal attention in tiles of `ATTENTION_TILE` queries and keys
        for rows of `length` (`lmjax.models.attention.tiled_causal_attend`; why tiles of 256 pay,
        with timings: docs/evaluation.md, Benchmark)."""
        blocks = length // ATTENTION_TILE if length % ATTENTION_TILE == 0 else 1
        return self.model.clone(config=dataclasses.replace(self.model.config, attention_blocks=blocks))


class Seq2SeqScorer(Scorer):
    """T5: the context's last `max_len` ids feed the encoder; the decoder reads the start id
    and the continuation shifted right, and its targets are the continuation."""

    fields = {"ids": INT, "mask": INT, "decoder_ids": INT, "decoder_mask": INT, "targets": INT,
              "weights": FLOAT}

    def __init__(self, *args, decoder_start_id: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.decoder_start_id = decoder_start_id

    def row(self, context: Sequence[int], continuation: Sequence[int]) -> tuple[list[int], list[int]]:
        check_continuation(continuation, self.max_len)
        return list(context)[-self.max_len:], list(continuation)

    def length(self, row: tuple[list[int], list[int]]) -> int:
        return len(row[0]) + len(row[1])

    def arrays(self, rows: list[tuple[list[int], list[int]]]) -> dict[str, np.ndarray]:
        enc_len = self.bucket(max(len(context) for context, _ in rows))
        dec_len = self.bucket(max(len(continuation) for _, continuation in rows))
        n_rows = self.rows_for(len(rows))
        ids, mask = pad_rows([context for context, _ in rows], n_rows, enc_len)
        decoder_ids, decoder_mask = pad_rows(
            [[self.decoder_start_id, *continuation[:-1]] for _, continuation in rows],
            n_rows, dec_len)
        targets, _ = pad_rows([continuation for _, continuation in rows], n_rows, dec_len)
        return {"ids": ids, "mask": mask, "decoder_ids": decoder_ids, "decoder_mask": decoder_mask,
                "targets": targets, "weights": decoder_mask.astype(np.float32)}

    def _score_fn(self, params: Any, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        logits_BTV = self.model.apply({"params": params}, batch["ids"], batch["decoder_ids"],
                                      batch["mask"], batch["decoder_mask"])
        return target_scores(logits_BTV, batch["targets"], batch["weights"])


class PseudoLogLikelihoodScorer(Scorer):
    """BERT: one row per continuation token, `[CLS] context continuation [SEP]` with that token
    replaced by `[MASK]`; the rows of a pair are summed (Salazar et al. 2020)."""

    fields = {"ids": INT, "mask": INT, "positions": INT, "targets": INT, "weights": FLOAT}

    def __init__(self, *args, cls_id: int, sep_id: int, mask_id: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.cls_id, self.sep_id, self.mask_id = cls_id, sep_id, mask_id

    def score(self, pairs: Sequence[Pair], progress: Progress | None = None) -> list[Score]:
        for _, continuation in pairs:
            check_continuation(continuation, self.max_len - 2)
        masked = [(context, (continuation, k)) for context, continuation in pairs
                  for k in range(len(continuation))]
        singles = super().score(masked)
        results, start = [], 0
        for _, continuation in pairs:
            mine = singles[start:start + len(continuation)]
            start += len(continuation)
            results.append((sum(s for s, _ in mine), all(g for _, g in mine)))
        if progress is not None:
            progress(len(pairs))
        return results

    def row(self, context: Sequence[int], continuation: Any) -> tuple[list[int], int, int]:
        continuation, k = continuation[0], continuation[1]
        body = [*context, *continuation][-(self.max_len - 2):]
        position = 1 + len(body) - len(continuation) + k
        return [self.cls_id, *body, self.sep_id], position, body[position - 1]

    def length(self, row: tuple[list[int], int, int]) -> int:
        return len(row[0])

    def arrays(self, rows: list[tuple[list[int], int, int]]) -> dict[str, np.ndarray]:
        length = self.bucket(max(self.length(row) for row in rows))
        n_rows = self.rows_for(len(rows))
        ids, mask = pad_rows([tokens for tokens, _, _ in rows], n_rows, length)
        positions = np.zeros((n_rows, 1), np.int32)
        targets = np.zeros((n_rows, 1), np.int32)
        weights = np.zeros((n_rows, 1), np.float32)
        for i, (_, position, target) in enumerate(rows):
            ids[i, position], positions[i, 0], targets[i, 0], weights[i, 0] = (
                self.mask_id, position, target, 1.0)
        return {"ids": ids, "mask": mask, "positions": positions, "targets": targets,
                "weights": weights}

    def _score_fn(self, params: Any, batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        out = self.model.apply({"params": params}, batch["ids"], attention_mask=batch["mask"],
                               masked_positions=batch["positions"])
        logits_BPV = out[0] if isinstance(out, tuple) else out
        return target_scores(logits_BPV, batch["targets"], batch["weights"])
