"""SFT, DPO, the reward model and PPO on tiny models: each loss goes down; DPO's loss equals
the formula by hand; a reference of another vocabulary or shape is refused in one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import TrainConfig
from lmjax.errors import ConfigError
from lmjax.posttrain import dpo, ppo, reward
from lmjax.posttrain.packing import Tokenized, pack, pad_rows
from lmjax.posttrain.sequences import check_same_model
from lmjax.posttrain.sft import train_sft
from lmjax.posttrain.template import ChatTemplate
from posttrain_helpers import stories_tokenizer, tiny_config, tiny_model

FIT = TrainConfig(steps=10, global_batch_size=4, lr=1e-2, warmup_steps=0, weight_decay=0.0, log_every=1)


def pair_arrays(n=8, seed=0):
    """Chosen responses use low ids, rejected ones high ids, after a shared prompt."""
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(3, 500, 4) for _ in range(n)]
    chosen = [Tokenized(np.concatenate([p, rng.integers(3, 60, 6)]).astype(np.int32), 4) for p in prompts]
    rejected = [Tokenized(np.concatenate([p, rng.integers(400, 500, 6)]).astype(np.int32), 4) for p in prompts]
    rows = {}
    for name, items in (("chosen", chosen), ("rejected", rejected)):
        rows.update({f"{name}_{k}": v for k, v in pad_rows(items, 12).items()})
    return rows


@pytest.mark.smoke
def test_dpo_loss_equals_hand_computation():
    pc, pr, rc, rr = (jnp.array(x) for x in ([-3.0, -5.0], [-4.0, -4.5], [-3.5, -5.2], [-3.9, -4.0]))
    beta = 0.5
    h = np.array([(-3.0 + 4.0) - (-3.5 + 3.9), (-5.0 + 4.5) - (-5.2 + 4.0)])
    expected = np.mean(np.log1p(np.exp(-beta * h)))
    loss, metrics = dpo.preference_loss(pc, pr, rc, rr, dpo.DPOConfig(beta=beta))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(metrics["reward_margin"]) == pytest.approx(np.mean(beta * h), rel=1e-6)
    assert float(metrics["accuracy"]) == 1.0
    ipo, _ = dpo.preference_loss(pc, pr, rc, rr, dpo.DPOConfig(beta=beta, loss="ipo"))
    assert float(ipo) == pytest.approx(np.mean((h - 1 / (2 * beta)) ** 2), rel=1e-6)


def test_sft_loss_decreases_on_packed_rows(tmp_path):
    model, params = tiny_model()
    rng = np.random.default_rng(0)
    rows = pack([Tokenized(rng.integers(3, 40, 10).astype(np.int32), 3) for _ in range(16)], 30)
    _, history, _ = train_sft(model, params, rows, FIT, tmp_path / "run")
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]


def test_dpo_loss_decreases_and_accuracy_rises(tmp_path):
    model, params = tiny_model()
    _, history, _ = dpo.train_dpo(model, params, params, pair_arrays(), FIT, tmp_path / "run",
                                    dpo.DPOConfig(beta=0.5))
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["accuracy"] == 1.0 and history[-1]["reward_margin"] > 0


@pytest.mark.parametrize("reads", reward.READS)
def test_reward_model_learns_held_out_pairs(reads, tmp_path):
    model, params = tiny_model()
    rm = reward.init_reward_model(params, model.config.d_model, reads)
    rm, history = reward.train_reward_model(model, rm, pair_arrays(), FIT, tmp_path / "run")
    assert history[-1]["loss"] < history[0]["loss"]
    assert reward.pair_accuracy(model, rm, pair_arrays(n=16, seed=1)) >= 0.8  # chance is 0.5


@pytest.mark.parametrize("change, message", [({"vocab_size": 256}, "vocabulary is 256"),
                                             ({"n_layers": 3}, "n_layers 3 vs 1")])
def test_reference_of_other_vocabulary_or_shape_is_refused(change, message):
    with pytest.raises(ConfigError, match=message) as err:
        check_same_model(tiny_config(), tiny_config(**change))
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_ppo_raises_a_token_reward(tmp_path):
    """Reward: the share of response ids below 100 (a fixed target the policy can learn)."""
    model, params = tiny_model()
    config = ppo.PPOConfig(updates=8, prompts_per_update=16, max_new_tokens=8, seq_len=24, minibatches=2,
                           epochs=4, kl_coef=0.01, ptx_coef=0.1)
    train = config.train_config(TrainConfig(lr=3e-2, warmup_steps=0, weight_decay=0.0))

    def share_low(rollout):
        weights = rollout.rows["weights"]
        return ((rollout.rows["targets"] < 100) * weights).sum(1) / weights.sum(1)

    ptx_rows = pack([Tokenized(np.arange(3, 13, dtype=np.int32), 1) for _ in range(8)], 12)
    method = ppo.ppo_method(model, params, stories_tokenizer(), ChatTemplate(), config, train, share_low,
                            report=lambda rollout: {}, ptx_rows=ptx_rows, ptx_batch_size=2)
    _, history = ppo.train_ppo(method, train, tmp_path / "run")
    rewards = [h["reward"] for h in history]
    assert np.mean(rewards[-3:]) > np.mean(rewards[:3]) + 0.2, rewards
    assert all(np.isfinite(h["kl"]) and "ptx_loss" in h for h in history)
    jax.tree.map(np.testing.assert_array_equal, method.batches.reference, params)
