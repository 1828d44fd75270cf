"""The train step's options change how it computes, never what it computes."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from lmjax.config import load_config
from lmjax.models import build_model
from lmjax.objectives import CausalLM
from lmjax.train.optimizer import learning_rate_schedule, make_optimizer
from lmjax.train.step import make_train_step

PAD = 255  # the last id of gpt_tiny's vocabulary


def random_batch(config, rows: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    windows = rng.integers(0, PAD, (rows, config.data.seq_len + 1))
    windows[1, -5:] = PAD  # a padded tail: zero-weight targets must not count
    objective = CausalLM(pad_id=PAD)
    examples = [objective.make_example(w, rng) for w in windows]
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def one_step(overrides, batch, params):
    """One jitted step from `params`. None of the options tested here changes the parameter
    tree, so every variant starts from the reference's parameters, initialised once per module
    (an eager init costs as much as compiling the step)."""
    # Adam's first update is lr·g/(|g| + eps): with the default eps 1e-8 a parameter whose
    # gradient is ~1e-8 moves by anything up to lr on rounding noise alone, so two exact ways of
    # computing the same gradient need not give the same parameters. eps 1e-6 keeps the first
    # update a smooth function of the gradient; a wrong gradient still moves parameters by ~lr.
    config = load_config("gpt_tiny", ["train.eps=1e-6", *overrides])
    model = build_model(config.model)
    optimizer = make_optimizer(config.train)
    state = {"step": jax.numpy.zeros((), "int32"), "params": params,
             "opt_state": optimizer.init(params)}
    step = make_train_step(model, CausalLM(pad_id=PAD), optimizer,
                           learning_rate_schedule(config.train), config.train.grad_accum_steps)
    return jax.jit(step)(state, batch)


@pytest.fixture(scope="module")
def reference():
    config = load_config("gpt_tiny")
    batch = random_batch(config)
    model = build_model(config.model)
    params = nn.unbox(model.init(jax.random.key(0), input_ids=batch["inputs"][:1]))["params"]
    return batch, params, one_step(["train.warmup_steps=0"], batch, params)


def assert_same_update(a, b, rtol):
    (state_a, metrics_a), (state_b, metrics_b) = a, b
    np.testing.assert_allclose(metrics_a["loss"], metrics_b["loss"], rtol=rtol)
    np.testing.assert_allclose(metrics_a["grad_norm"], metrics_b["grad_norm"], rtol=rtol * 10)
    for x, y in zip(jax.tree.leaves(state_a["params"]), jax.tree.leaves(state_b["params"])):
        np.testing.assert_allclose(x, y, rtol=rtol * 10, atol=1e-4)  # lr 3e-3: a wrong step is >1e-3 off


def test_gradient_accumulation_gives_the_whole_batch_update(reference):
    batch, params, whole = reference
    accumulated = one_step(["train.warmup_steps=0", "train.grad_accum_steps=4"], batch, params)
    assert_same_update(accumulated, whole, rtol=1e-5)


def test_rematerialisation_gives_the_same_update(reference):
    batch, params, whole = reference
    for policy in ("full", "dots_saveable"):
        remat = one_step(["train.warmup_steps=0", f"model.remat={policy}"], batch, params)
        assert_same_update(remat, whole, rtol=1e-5)


def test_blocked_causal_attention_gives_the_same_update(reference):
    batch, params, whole = reference
    blocked = one_step(["train.warmup_steps=0", "model.attention_blocks=4"], batch, params)
    assert_same_update(blocked, whole, rtol=1e-5)


def test_bfloat16_compute_keeps_float32_master_weights(reference):
    batch, params, whole = reference
    overrides = ["train.warmup_steps=0", "model.dtype=bfloat16"]
    model = build_model(load_config("gpt_tiny", overrides).model)
    initial = jax.eval_shape(model.init, jax.random.key(0), input_ids=batch["inputs"][:1])
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(nn.unbox(initial)["params"]))
    state, metrics = one_step(overrides, batch, params)
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(state["params"]))
    np.testing.assert_allclose(metrics["loss"], whole[1]["loss"], rtol=2e-2)


def test_loss_counts_only_weighted_targets_and_matches_optax(reference):
    batch, params, (_, metrics) = reference
    model = build_model(load_config("gpt_tiny").model)
    logits = jax.jit(model.apply)({"params": params}, input_ids=batch["inputs"])
    per_token = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    expected = (per_token * batch["weights"]).sum() / batch["weights"].sum()
    assert batch["weights"].sum() == batch["weights"].size - 5
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    config = load_config("gpt_tiny", ["train.steps=100", "train.warmup_steps=10", "train.lr=1.0",
                                      "train.min_lr_ratio=0.1"])
    schedule = learning_rate_schedule(config.train)
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10)], [0.0, 0.5, 1.0], atol=1e-6)
    midway = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 45 / 90))
    np.testing.assert_allclose(schedule(55), midway, rtol=1e-5)
    np.testing.assert_allclose(schedule(100), 0.1, rtol=1e-5)
