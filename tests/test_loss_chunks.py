"""`model.loss_chunks`: the causal-LM loss formed one vocabulary chunk at a time equals the
loss over whole logits (value, accuracy and gradients, tied and untied heads) and a
hand-written logsumexp and argmax, and its compiled program holds no B×T×V float32 logits."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import ModelConfig, load_config
from lmjax.errors import ConfigError
from lmjax.models import build_model
from lmjax.objectives import CausalLM
from lmjax.objectives.causal_lm import chunked_cross_entropy
from lmjax.train.step import summed_loss_fn

VOCAB, BATCH, LENGTH = 96, 2, 16
MODEL = ModelConfig(vocab_size=VOCAB, d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=LENGTH,
                    dtype="float32")


def run_loss(model, params, batch, chunks):
    """Summed loss, metrics and gradients, and the compiled program's HLO text."""
    loss_fn = jax.value_and_grad(summed_loss_fn(model, CausalLM(loss_chunks=chunks)), has_aux=True)
    compiled = jax.jit(loss_fn).lower(params, batch).compile()
    return compiled(params, batch), compiled.as_text()


@pytest.mark.parametrize("tie", [True, False])
def test_chunked_loss_and_gradients_equal_whole_logits(tie):
    """Same value and gradients; and no float32 B×T×V array in the chunked program, while the
    whole-logits program has them (so the check can fail)."""
    model = build_model(dataclasses.replace(MODEL, tie_embeddings=tie))
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), np.zeros((1, LENGTH), np.int32))["params"])
    rng = np.random.default_rng(0)
    batch = {"inputs": rng.integers(0, VOCAB, (BATCH, LENGTH)).astype(np.int32),
             "targets": rng.integers(0, VOCAB, (BATCH, LENGTH)).astype(np.int32),
             "weights": (rng.random((BATCH, LENGTH)) < 0.9).astype(np.float32)}
    ((whole, (tokens, extra)), whole_grads), whole_hlo = run_loss(model, params, batch, 1)
    ((chunked, (chunked_tokens, chunked_extra)), chunked_grads), chunked_hlo = run_loss(
        model, params, batch, 4)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)
    assert chunked_tokens == tokens and chunked_extra["accuracy"] == extra["accuracy"]
    # float32 sums in another order: within a few ulps of the largest gradient entry (the
    # key biases' gradients are zero up to rounding, so no per-leaf relative bound holds)
    scale = max(float(np.abs(leaf).max()) for leaf in jax.tree.leaves(whole_grads))
    for got, want in zip(jax.tree.leaves(chunked_grads), jax.tree.leaves(whole_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * scale)
    logits_shape = f"f32[{BATCH},{LENGTH},{VOCAB}]"
    assert logits_shape in whole_hlo and logits_shape not in chunked_hlo


def test_chunked_cross_entropy_matches_a_hand_logsumexp():
    rng = np.random.default_rng(3)
    hidden_BTD = rng.normal(size=(2, 3, 8)).astype(np.float32)
    weights_DV = rng.normal(size=(8, 12)).astype(np.float32)
    targets_BT = rng.integers(0, 12, (2, 3)).astype(np.int32)
    nll_BT, argmax_BT = chunked_cross_entropy(hidden_BTD, weights_DV, targets_BT, chunks=3)
    logits = hidden_BTD.astype(np.float64) @ weights_DV
    log_z = np.log(np.exp(logits).sum(-1))
    want = log_z - np.take_along_axis(logits, targets_BT[..., None], -1)[..., 0]
    np.testing.assert_allclose(nll_BT, want, rtol=1e-5)
    np.testing.assert_array_equal(argmax_BT, logits.argmax(-1))


def test_ties_across_chunks_pick_the_first_id_as_argmax_does():
    weights_DV = np.zeros((1, 6), np.float32)
    weights_DV[0, [1, 4]] = 2.0  # ids 1 and 4 tie, in chunks 0 and 2 of three
    _, argmax_BT = chunked_cross_entropy(np.ones((1, 1, 1), np.float32), weights_DV,
                                         np.zeros((1, 1), np.int32), chunks=3)
    assert int(argmax_BT[0, 0]) == 1


@pytest.mark.parametrize("overrides, message", [
    (["model.loss_chunks=3"], "model.loss_chunks=3 does not divide model.vocab_size=512"),
    (["model.loss_chunks=0"], "model.loss_chunks=0 must be positive"),
])
def test_bad_chunks_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config("gpt_tiny", ["model.vocab_size=512", *overrides])
    assert "\n" not in str(err.value)


def test_chunks_apply_to_the_causal_lm_only():
    with pytest.raises(ConfigError, match="set model.loss_chunks=1 for model.arch=bert"):
        load_config("bert_tiny", ["model.loss_chunks=2"])
