"""GAE against a hand-computed example."""

import numpy as np
import pytest

from lmjax.posttrain.gae import gae, whiten


def test_gae_matches_hand_computation():
    # One row: position 0 is the prompt (masked out), positions 1..3 the response.
    rewards = np.array([[0.0, 0.1, -0.2, 1.0]])
    values = np.array([[0.0, 0.5, 0.4, 0.3]])
    mask = np.array([[0.0, 1.0, 1.0, 1.0]])
    gamma, lam = 0.9, 0.8
    d3 = 1.0 - 0.3
    d2 = -0.2 + 0.9 * 0.3 - 0.4
    d1 = 0.1 + 0.9 * 0.4 - 0.5
    a3 = d3
    a2 = d2 + 0.9 * 0.8 * a3
    a1 = d1 + 0.9 * 0.8 * a2
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    np.testing.assert_allclose(advantages[0], [0.0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(returns[0], [0.0, a1 + 0.5, a2 + 0.4, a3 + 0.3], rtol=1e-6)


def test_gae_ignores_padding_after_the_response():
    rewards = np.array([[0.0, 1.0, 5.0]])
    values = np.array([[0.0, 0.25, 9.0]])
    advantages, _ = gae(rewards, values, np.array([[0.0, 1.0, 0.0]]), 1.0, 1.0)
    assert advantages[0].tolist() == pytest.approx([0.0, 0.75, 0.0])


def test_whiten_over_masked_entries():
    values = np.array([[9.0, 1.0, 3.0]])
    out = whiten(values, np.array([[0.0, 1.0, 1.0]]))
    np.testing.assert_allclose(out, [[0.0, -1.0, 1.0]], atol=1e-6)


def test_rollout_rows_survive_the_checkpoint_json_bitwise():
    """PPO stores an update's rows in the checkpoint's JSON data state when it stops mid-update;
    float32 and int32 values must come back bit for bit."""
    import json

    from lmjax.posttrain.ppo import decode_arrays, encode_arrays

    rng = np.random.default_rng(0)
    rows = {"old_logp": rng.standard_normal((3, 5)).astype(np.float32) * 1e-3,
            "last": rng.integers(0, 5, 3).astype(np.int32)}
    back = decode_arrays(json.loads(json.dumps(encode_arrays(rows))))
    for name, value in rows.items():
        assert back[name].dtype == value.dtype and back[name].tobytes() == value.tobytes()
