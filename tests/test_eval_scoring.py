"""`CausalScorer`'s shortcuts against the plain computation they replace: each pair's row
through the model's own full logits under an attention mask, and a float64 log-softmax.
The scorer drops the attention mask (right padding is invisible to causal attention), attends in blocks,
applies the output layer to a span of positions only and shrinks a task's last batch; any of
these going wrong changes a score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import load_config
from lmjax.errors import DataError
from lmjax.eval.batching import batch_rows
from lmjax.eval.scorers import ATTENTION_TILE, CausalScorer
from lmjax.models.gpt import GPT


@pytest.fixture(scope="module")
def tiny_gpt():
    config = load_config("gpt_tiny", ["model.max_len=512", "data.seq_len=512", "model.vocab_size=97"])
    model = GPT(config.model)
    params = jax.jit(model.init)(jax.random.PRNGKey(3), jnp.zeros((1, 8), jnp.int32))["params"]
    params = jax.tree.map(lambda leaf: leaf * 4 if leaf.ndim > 1 else leaf, params)  # peaked logits
    return model, params, config


def reference_scores(model, params, pairs):
    """Per pair: the summed log-probability of its continuation and whether each of its tokens
    is the argmax, from the model's full logits of its right-padded row under the attention
    mask (unblocked attention, every position through the output layer), in float64."""
    wholes = [np.asarray([*c, *x][-(model.config.max_len + 1):]) for c, x in pairs]
    length = model.config.max_len
    ids, mask = np.zeros((len(pairs), length), np.int32), np.zeros((len(pairs), length), np.int32)
    for i, whole in enumerate(wholes):
        ids[i, :len(whole) - 1], mask[i, :len(whole) - 1] = whole[:-1], 1
    logits = np.asarray(jax.jit(model.apply)({"params": params}, ids, attention_mask=mask), np.float64)
    top = logits.max(-1, keepdims=True)
    logprobs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    results = []
    for i, (whole, (_, continuation)) in enumerate(zip(wholes, pairs)):
        scored = range(len(whole) - 1 - len(continuation), len(whole) - 1)
        results.append((sum(logprobs[i, t, whole[t + 1]] for t in scored),
                        all(logits[i, t].argmax() == whole[t + 1] for t in scored)))
    return results


@pytest.mark.smoke
def test_scores_equal_each_pair_scored_alone_through_full_logits(tiny_gpt):
    model, params, config = tiny_gpt
    rng = np.random.default_rng(0)

    def tokens(n):
        return [int(t) for t in rng.integers(1, 97, n)]

    pairs = [
        (tokens(200), tokens(3)),    # span 32 at the end of a long row
        (tokens(5), tokens(2)),      # a row shorter than its batch's span
        (tokens(60), tokens(140)),   # span 256 = the row bucket: no gather
        ([7], tokens(512)),          # a whole-context continuation (a rolling window)
        (tokens(300), tokens(10)),   # a 512-token row: attention in 2 tiles of 256
        (tokens(600), tokens(40)),   # cut from the left to max_len + 1 tokens
        (tokens(1), tokens(1)),      # alone in the last batch: 1 row, not 4
    ]
    scorer = CausalScorer(model, params, config, batch_size=4)
    scores = scorer.score(pairs)
    for (logprob, greedy), (expected, expected_greedy) in zip(scores, reference_scores(model, params, pairs)):
        assert logprob == pytest.approx(expected, rel=1e-5, abs=1e-4)
        assert greedy == expected_greedy


def test_an_empty_context_is_refused(tiny_gpt):
    model, params, config = tiny_gpt
    with pytest.raises(DataError, match="give every continuation a context"):
        CausalScorer(model, params, config).score([([], [1, 2])])


def test_greedy_is_true_where_the_model_predicts_the_continuation(tiny_gpt):
    model, params, config = tiny_gpt
    context = [5, 17, 33]
    logits = model.apply({"params": params}, jnp.asarray([context]))
    predicted = int(jnp.argmax(logits[0, -1]))
    scorer = CausalScorer(model, params, config, batch_size=2)
    (_, greedy), (_, other) = scorer.score([(context, [predicted]), (context, [(predicted + 1) % 97])])
    assert greedy and not other


def test_arrays_hold_the_scored_span_and_shrink_the_last_batch(tiny_gpt):
    model, params, config = tiny_gpt
    scorer = CausalScorer(model, params, config, batch_size=8)
    rows = [scorer.row(list(range(1, 101)), [7, 8, 9]), scorer.row([1], [2, 3])]
    arrays = scorer.arrays(rows)
    assert arrays["ids"].shape == (2, 128) and arrays["targets"].shape == (2, 32)
    start = int(arrays["starts"][0, 0])
    assert start == 102 - 32  # 103 tokens: 102 inputs, the span ends at the last
    np.testing.assert_array_equal(arrays["targets"][0][arrays["weights"][0] > 0], [7, 8, 9])
    np.testing.assert_array_equal(arrays["targets"][1][arrays["weights"][1] > 0], [2, 3])
    assert arrays["weights"].sum() == 5
    assert scorer.model_for(512).config.attention_blocks == 512 // ATTENTION_TILE == 2
    assert scorer.model_for(128).config.attention_blocks == 1


@pytest.mark.parametrize("n_rows,batch_size,shards,expected", [
    (5, 8, 1, 8), (1, 8, 1, 1), (3, 8, 1, 4), (8, 8, 1, 8), (3, 6, 2, 4), (5, 6, 2, 6), (1, 6, 2, 2),
])
def test_batch_rows(n_rows, batch_size, shards, expected):
    assert batch_rows(n_rows, batch_size, shards) == expected
