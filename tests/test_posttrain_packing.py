"""Packing for SFT: a packed row's logits equal each example run alone (segment ids in the
GPT), the loss mask covers response tokens only, and the prompt-too-long error."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.errors import DataError
from lmjax.models.gpt import segment_positions
from lmjax.posttrain.examples import user_prompt
from lmjax.posttrain.packing import Tokenized, epoch_batches, pack, pad_rows, tokenize
from lmjax.posttrain.template import ChatTemplate
from posttrain_helpers import stories_tokenizer, tiny_model


def examples(lengths, prompt_lens, seed=0):
    rng = np.random.default_rng(seed)
    return [Tokenized(rng.integers(3, 500, n).astype(np.int32), p) for n, p in zip(lengths, prompt_lens)]


@pytest.mark.parametrize("position", ["rope", "learned"])
def test_packed_row_logits_equal_each_example_alone(position):
    model, params = tiny_model(position=position, n_layers=2)
    items = examples([7, 5, 9], [3, 2, 4])
    rows = pack(items, 24)
    assert rows["inputs"].shape == (1, 24)
    packed = model.apply({"params": params}, rows["inputs"], segment_ids=rows["segment_ids"])
    start = 0
    for item in items:
        alone = model.apply({"params": params}, item.ids[None, :-1])
        n = item.ids.size - 1
        np.testing.assert_allclose(packed[0, start:start + n], alone[0], atol=1e-5, rtol=1e-5)
        start += n


def test_segment_positions_restart_per_segment():
    segments = jnp.array([[1, 1, 1, 2, 2, 3, 0, 0]])
    assert segment_positions(segments).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1]]


def test_loss_mask_marks_response_targets_only():
    rows = pack(examples([6], [4]), 8)
    # Targets are ids 1..5; ids 4 and 5 are the response (prompt holds ids 0..3).
    assert rows["weights"][0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    assert rows["segment_ids"][0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]


def test_first_fit_packing_keeps_every_example_whole():
    items = examples([9, 9, 4, 3], [2, 2, 2, 2])
    rows = pack(items, 10)
    # Positions 8, 8, 3, 2: the 3 fits neither row's 2 free slots and opens a third row,
    # the 2 fills the first row.
    assert rows["segment_ids"].tolist() == [[1] * 8 + [2] * 2, [1] * 8 + [0] * 2, [1] * 3 + [0] * 7]
    assert int(rows["weights"].sum()) == sum(item.ids.size - item.prompt_len for item in items)


def test_pad_rows_last_is_last_input():
    rows = pad_rows(examples([5, 3], [2, 1]), 6)
    assert rows["last"].tolist() == [3, 1]


def test_prompt_leaving_no_room_is_one_line_error():
    tokenizer = stories_tokenizer()
    with pytest.raises(DataError, match="leaves no room for the response") as err:
        tokenize(tokenizer, ChatTemplate(), user_prompt("Write a story about a dog. " * 4), "Once.", 16)
    assert "\n" not in str(err.value)


def test_tokenize_ends_response_with_template_end_token():
    tokenizer = stories_tokenizer()
    item = tokenize(tokenizer, ChatTemplate(end_token="eos"), user_prompt("Hi."), "Once upon a time.", 64)
    assert item.ids[0] == tokenizer.bos_id and item.ids[-1] == tokenizer.eos_id
    assert tokenizer.decode(item.ids[item.prompt_len:-1].tolist()).strip() == "Once upon a time."


def test_epoch_batches_cover_every_row_each_epoch():
    arrays = {"x": np.arange(6)}
    batches = epoch_batches(arrays, 3, seed=0)
    seen = np.concatenate([next(batches)["x"] for _ in range(2)])
    assert sorted(seen.tolist()) == list(range(6))


def test_epoch_batches_resume_from_their_state_exactly():
    """A fresh iterator given another's state continues with exactly its batches (what a
    resumed run relies on), across epoch boundaries."""
    arrays = {"x": np.arange(7)}
    first = epoch_batches(arrays, 3, seed=5)
    for _ in range(4):
        next(first)
    resumed = epoch_batches(arrays, 3, seed=5)
    resumed.set_state(json.loads(json.dumps(first.get_state())))  # as the checkpoint stores it
    for _ in range(5):
        np.testing.assert_array_equal(next(resumed)["x"], next(first)["x"])
