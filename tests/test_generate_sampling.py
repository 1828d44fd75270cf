"""Sampling rules against distributions worked out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.decoding import Sampling, filter_logits, sample
from lmjax.errors import ConfigError

# Probabilities 0.5, 0.2, 0.15, 0.1, 0.05, listed out of order so sorting is exercised.
PROBS_V = np.array([0.1, 0.5, 0.05, 0.2, 0.15])
LOGITS_1V = jnp.log(jnp.asarray(PROBS_V))[None]


def _support_probs(top_k=0, top_p=1.0):
    return np.asarray(jax.nn.softmax(filter_logits(LOGITS_1V, top_k, top_p), axis=-1))[0]


@pytest.mark.parametrize(
    ("top_k", "top_p", "expected_V"),
    [
        (0, 1.0, PROBS_V),
        (2, 1.0, [0, 0.5 / 0.7, 0, 0.2 / 0.7, 0]),
        # mass before 0.15 is 0.7 < 0.8, so it is kept; before 0.1 it is 0.85: cut
        (0, 0.8, [0, 0.5 / 0.85, 0, 0.2 / 0.85, 0.15 / 0.85]),
        (0, 0.5, [0, 1, 0, 0, 0]),  # 0.5 alone reaches 0.5
        # top-3 renormalised is 0.588, 0.235, 0.176; top_p 0.6 keeps the first two
        (3, 0.6, [0, 0.5 / 0.7, 0, 0.2 / 0.7, 0]),
    ],
)
def test_top_k_and_top_p_support(top_k, top_p, expected_V):
    np.testing.assert_allclose(_support_probs(top_k, top_p), expected_V, atol=1e-6)


def test_samples_follow_the_filtered_distribution_and_are_reproducible():
    logits_NV = jnp.broadcast_to(LOGITS_1V, (20_000, 5))
    sampling = Sampling(temperature=1.0, top_p=0.8)
    ids_N = np.asarray(sample(logits_NV, jax.random.PRNGKey(3), sampling))
    frequency_V = np.bincount(ids_N, minlength=5) / ids_N.size
    np.testing.assert_allclose(frequency_V, [0, 0.5 / 0.85, 0, 0.2 / 0.85, 0.15 / 0.85], atol=0.015)
    again_N = np.asarray(sample(logits_NV, jax.random.PRNGKey(3), sampling))
    np.testing.assert_array_equal(ids_N, again_N)


def test_temperature_sharpens_and_zero_is_argmax():
    logits_NV = jnp.broadcast_to(LOGITS_1V, (20_000, 5))
    ids_N = np.asarray(sample(logits_NV, jax.random.PRNGKey(0), Sampling(temperature=0.5)))
    sharpened_V = PROBS_V**2 / np.sum(PROBS_V**2)  # softmax(log p / 0.5) ∝ p²
    np.testing.assert_allclose(np.bincount(ids_N, minlength=5) / ids_N.size, sharpened_V, atol=0.015)
    greedy = sample(LOGITS_1V, jax.random.PRNGKey(0), Sampling(temperature=0))
    assert greedy.tolist() == [1]


@pytest.mark.parametrize("bad", [{"temperature": -1}, {"top_k": -2}, {"top_p": 0}, {"top_p": 1.5}])
def test_bad_sampling_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        Sampling(**bad)
