"""Prompt/response examples as training batches: SFT rows packed with segment ids and a
loss mask, and one-example-per-row batches for scoring responses (DPO, reward model).

An example is its prompt's ids (BOS, rendered prompt) then its response's ids (response,
end token). It contributes one position per id but the last: inputs ids[:-1], targets
ids[1:], weight 1 where the target is a response id, so only responses are learned.
Packing places whole examples into rows of `seq_len` positions (first fit, in order); each
gets its own segment id (0 is padding), so `GPT(..., segment_ids=...)` keeps them apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from lmjax.errors import DataError
from lmjax.posttrain.examples import Turn
from lmjax.posttrain.template import ChatTemplate
from lmjax.tokenizers import Tokenizer


@dataclasses.dataclass(frozen=True)
class Tokenized:
    ids: np.ndarray  # prompt then response ids
    prompt_len: int


def tokenize(tokenizer: Tokenizer, template: ChatTemplate, prompt: tuple[Turn, ...], response: str,
             seq_len: int) -> Tokenized:
    """The example's ids, its response cut to fit `seq_len` inputs; one-line DataError when
    the prompt alone fills the context."""
    prompt_ids = template.prompt_ids(tokenizer, prompt)
    if len(prompt_ids) >= seq_len:
        raise DataError(
            f"a prompt of {len(prompt_ids)} tokens leaves no room for the response in a context of "
            f"{seq_len}: shorten the prompt or raise seq_len (prompt starts {template.prompt_text(prompt)[:40]!r})"
        )
    ids = prompt_ids + template.response_ids(tokenizer, response)
    return Tokenized(np.asarray(ids[:seq_len + 1], np.int32), len(prompt_ids))


def _positions(example: Tokenized) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """inputs, targets and response weights of one example."""
    weights = (np.arange(1, example.ids.size) >= example.prompt_len).astype(np.float32)
    return example.ids[:-1], example.ids[1:], weights


def pack(examples: Sequence[Tokenized], seq_len: int) -> dict[str, np.ndarray]:
    """N×seq_len arrays inputs, targets, weights, segment_ids (first fit, in order)."""
    rows: list[list[Tokenized]] = []
    room: list[int] = []
    for example in examples:
        need = example.ids.size - 1
        slot = next((r for r, free in enumerate(room) if free >= need), None)
        if slot is None:
            rows.append([])
            room.append(seq_len)
            slot = len(rows) - 1
        rows[slot].append(example)
        room[slot] -= need
    return _stack_rows(rows, seq_len)


def _stack_rows(rows: list[list[Tokenized]], seq_len: int) -> dict[str, np.ndarray]:
    out = {name: np.zeros((len(rows), seq_len), dtype)
           for name, dtype in (("inputs", np.int32), ("targets", np.int32),
                               ("weights", np.float32), ("segment_ids", np.int32))}
    for r, row in enumerate(rows):
        cursor = 0
        for segment, example in enumerate(row, start=1):
            inputs, targets, weights = _positions(example)
            span = slice(cursor, cursor + inputs.size)
            out["inputs"][r, span], out["targets"][r, span], out["weights"][r, span] = inputs, targets, weights
            out["segment_ids"][r, span] = segment
            cursor += inputs.size
    return out


def pad_rows(examples: Sequence[Tokenized], seq_len: int) -> dict[str, np.ndarray]:
    """One example per row, right-padded to `seq_len` positions: inputs, targets, weights
    (response targets) and last (index of the row's last input, whose hidden state sees the
    whole response). Right padding needs no mask in a causal model."""
    out = _stack_rows([[example] for example in examples], seq_len)
    out["last"] = np.array([example.ids.size - 2 for example in examples], np.int32)
    del out["segment_ids"]
    return out


def epoch_batches(arrays: dict[str, np.ndarray], batch_size: int, seed: int) -> EpochBatches:
    """Batches of `batch_size` rows forever, reshuffled each epoch (seeded); the rows left
    over at an epoch's end wait for the next."""
    return EpochBatches(arrays, batch_size, seed)


class EpochBatches:
    """`epoch_batches` as an iterator the training loop can checkpoint: its state is the
    number of batches taken, and `set_state` replays the seeded shuffles up to there (index
    arithmetic only), so a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int) -> None:
        rows = next(iter(arrays.values())).shape[0]
        if rows < batch_size:
            raise DataError(f"the data fills {rows} rows, fewer than the batch size {batch_size}: "
                            "lower the batch size or give more examples")
        self.arrays, self.rows, self.batch_size, self.seed = arrays, rows, batch_size, seed
        self.set_state({"batches_taken": 0})

    def __iter__(self) -> EpochBatches:
        return self

    def _next_indices(self) -> np.ndarray:
        if self.order.size < self.batch_size:
            self.order = np.concatenate([self.order, self.rng.permutation(self.rows)])
        take, self.order = self.order[:self.batch_size], self.order[self.batch_size:]
        self.taken += 1
        return take

    def __next__(self) -> dict[str, np.ndarray]:
        take = self._next_indices()
        return {name: value[take] for name, value in self.arrays.items()}

    def get_state(self) -> dict[str, int]:
        return {"batches_taken": self.taken}

    def set_state(self, state: dict) -> None:
        self.rng, self.order, self.taken = np.random.default_rng(self.seed), np.empty(0, np.int64), 0
        for _ in range(int(state["batches_taken"])):
            self._next_indices()
