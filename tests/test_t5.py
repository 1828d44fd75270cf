"""T5: relative position buckets, a causal decoder over a padded encoder, the same loss and
gradients on a (data, fsdp, tensor) = (2, 2, 2) mesh, and `lmjax train --config t5_tiny`."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from lmjax import parallel
from lmjax.config import load_config
from lmjax.models import build_model
from lmjax.models.layers import relative_position_bucket
from lmjax.objectives import SpanCorruption
from lmjax.tokenizers import load
from lmjax.train import train
from lmjax.train.step import summed_loss_fn

# (offset key - query, bucket): exact below 8 (16 one way), logarithmic to 128, then capped.
ENCODER_BUCKETS = [(0, 0), (1, 17), (-1, 1), (-7, 7), (-8, 8), (-16, 10), (-127, 15),
                   (-1000, 15), (1000, 31)]
DECODER_BUCKETS = [(5, 0), (0, 0), (-1, 1), (-15, 15), (-16, 16), (-127, 31), (-200, 31)]


@pytest.mark.parametrize("bidirectional, expected", [(True, ENCODER_BUCKETS),
                                                     (False, DECODER_BUCKETS)])
def test_relative_position_buckets_are_t5s(bidirectional, expected):
    offsets = np.array([offset for offset, _ in expected])
    buckets = relative_position_bucket(offsets, bidirectional, num_buckets=32, max_distance=128)
    assert np.asarray(buckets).tolist() == [bucket for _, bucket in expected]


@pytest.fixture(scope="module")
def t5():
    config = load_config("t5_tiny")
    model = build_model(config.model)
    objective = SpanCorruption(seq_len=config.data.seq_len, vocab_end=config.model.vocab_size,
                               eos_id=2, pad_id=0)
    rng = np.random.default_rng(0)
    windows = rng.integers(5, 200, (8, objective.window_length(config.data.seq_len)))
    windows[-1, 20:] = 0  # a padded tail window
    examples = [objective.make_example(window, rng) for window in windows]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    variables = jax.jit(model.init)(jax.random.key(0), **objective.model_inputs(batch))
    return config, model, objective, batch, variables


@pytest.mark.smoke
def test_decoder_is_causal_and_encoder_padding_is_invisible(t5):
    _, model, objective, batch, variables = t5
    params = nn.unbox(variables)["params"]
    apply = jax.jit(model.apply)
    inputs = objective.model_inputs(batch)
    reference = np.asarray(apply({"params": params}, **inputs))
    changed = dict(inputs, decoder_input_ids=inputs["decoder_input_ids"].copy())
    changed["decoder_input_ids"][:, 5] += 1
    changed["input_ids"] = np.where(inputs["attention_mask"] == 1, inputs["input_ids"], 7)
    logits = np.asarray(apply({"params": params}, **changed))
    np.testing.assert_allclose(logits[:, :5], reference[:, :5], atol=1e-5)
    assert np.abs(logits[:, 5:] - reference[:, 5:]).max() > 1e-4


def test_loss_and_gradients_agree_on_a_2x2x2_mesh(t5):
    config, model, objective, batch, variables = t5
    summed = summed_loss_fn(model, objective)

    def mean_loss(params, batch):
        loss_sum, (tokens, _) = summed(params, batch)
        return loss_sum / tokens

    grad_fn = jax.jit(jax.value_and_grad(mean_loss))
    reference_loss, reference_grads = grad_fn(nn.unbox(variables)["params"], batch)
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 2, 2, 2
    mesh, rules = parallel.make_mesh(config.mesh), parallel.axis_rules(config.mesh)
    shardings = parallel.logical_shardings(nn.get_partition_spec(variables), mesh, rules)
    params = jax.device_put(nn.unbox(variables), shardings)["params"]
    query = params["decoder"]["layer_0"]["cross_attn"]["query"]["kernel"]
    assert tuple(query.sharding.spec) == ("fsdp", "tensor", None)  # (embed, heads, kv)
    assert tuple(params["encoder"]["relpos"]["embedding"].sharding.spec) == (None, "tensor")
    with parallel.activate(mesh, rules):
        loss, grads = grad_fn(params, jax.device_put(batch, parallel.batch_sharding(mesh)))
    np.testing.assert_allclose(loss, reference_loss, rtol=1e-5)
    for got, expected in zip(jax.tree.leaves(grads), jax.tree.leaves(reference_grads), strict=True):
        np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-4)


def test_t5_tiny_trains_and_logs_span_metrics(tmp_path):
    """The run trains its own SentencePiece tokenizer with T5's sentinels, as GPT runs do."""
    config = load_config("t5_tiny", [f"run_dir={tmp_path}", "train.steps=4", "train.eval_every=4",
                                     "train.eval_batches=1", "train.peak_flops=1e12"])
    records = train(config).records
    final = records[-1]
    assert final["step"] == 4 and np.isfinite(final["span_loss"])
    assert final["eval_perplexity"] == pytest.approx(np.exp(final["eval_span_loss"]), rel=1e-5)
    assert 0 <= final["eval_accuracy"] <= 1
    assert (tmp_path / "checkpoints" / "4").is_dir()
    assert len(load(tmp_path / "tokenizer").sentinel_ids(100)) == 100
