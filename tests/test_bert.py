"""BERT: bidirectional attention that ignores padding and the optional NSP head.
Training bert_tiny (from an imported checkpoint) is in test_hf_convert.py."""

import dataclasses

import jax
import numpy as np
import pytest

from lmjax.config import load_config
from lmjax.models import build_model


@pytest.fixture(scope="module")
def bert():
    config = load_config("bert_tiny").model
    model = build_model(config)
    ids = np.random.default_rng(0).integers(5, config.vocab_size, (2, 12))
    params = jax.jit(model.init)(jax.random.key(0), input_ids=ids)["params"]
    return model, params, ids, jax.jit(model.apply)


@pytest.mark.smoke
def test_attention_sees_both_directions(bert):
    _, params, ids, apply = bert
    changed = ids.copy()
    changed[:, -1] = (changed[:, -1] + 1) % 256
    before, after = apply({"params": params}, input_ids=ids), apply({"params": params}, input_ids=changed)
    assert np.abs(np.asarray(before[:, 0] - after[:, 0])).max() > 1e-4


def test_padding_changes_no_real_position(bert):
    _, params, ids, apply = bert
    padded = np.concatenate([ids, np.zeros((2, 4), ids.dtype)], axis=1)
    mask = (np.arange(16) < 12).astype(np.int32)[None].repeat(2, 0)
    types = np.zeros_like(padded)
    alone = apply({"params": params}, input_ids=ids, attention_mask=mask[:, :12],
                  token_type_ids=types[:, :12])
    with_padding = apply({"params": params}, input_ids=padded, attention_mask=mask,
                         token_type_ids=types)
    np.testing.assert_allclose(with_padding[:, :12], alone, atol=1e-5)
    other_types = apply({"params": params}, input_ids=ids, token_type_ids=np.ones_like(ids))
    assert np.abs(np.asarray(other_types - alone)).max() > 1e-4


def test_the_next_sentence_head_is_optional(bert):
    model, _, ids, _ = bert
    shapes = jax.eval_shape(model.init, jax.random.key(0), input_ids=ids)["params"]
    assert "nsp" not in shapes
    with_nsp = build_model(dataclasses.replace(model.config, nsp=True))
    variables = jax.eval_shape(with_nsp.init, jax.random.key(0), input_ids=ids)
    mlm, nsp = jax.eval_shape(with_nsp.apply, variables, input_ids=ids)
    assert mlm.shape == (2, 12, 256) and nsp.shape == (2, 2)



def test_masked_positions_give_the_full_logits_there(bert):
    _, params, ids, apply = bert
    positions = np.array([[0, 5, 11], [3, 3, 7]])
    full = np.asarray(apply({"params": params}, input_ids=ids))
    picked = apply({"params": params}, input_ids=ids, masked_positions=positions)
    np.testing.assert_allclose(picked, np.take_along_axis(full, positions[..., None], axis=1),
                               atol=1e-5)
