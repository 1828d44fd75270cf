"""Sharding: one model, one batch, the same loss and gradients on every mesh layout."""

import functools

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from lmjax import parallel
from lmjax.config import load_config
from lmjax.errors import ConfigError
from lmjax.models import build_model
from lmjax.objectives import CausalLM
from lmjax.train.step import summed_loss_fn

MESHES = [(1, 1, 1), (8, 1, 1), (2, 4, 1), (2, 2, 2)]


@pytest.fixture(scope="module")
def setup():
    config = load_config("gpt_tiny")
    model = build_model(config.model)
    objective = CausalLM()
    rng = np.random.default_rng(0)
    windows = rng.integers(0, config.model.vocab_size, (8, config.data.seq_len + 1))
    examples = [objective.make_example(w, rng) for w in windows]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    variables = model.init(jax.random.key(0), input_ids=batch["inputs"][:1])
    return config, model, objective, batch, variables


def loss_and_grads(model, objective, params, batch):
    summed = summed_loss_fn(model, objective)

    def mean_loss(p):
        loss_sum, (weights, _) = summed(p, batch)
        return loss_sum / weights

    return jax.value_and_grad(mean_loss)(params)


@pytest.fixture(scope="module")
def on_mesh(setup):
    """Loss, gradients and placed parameters by mesh shape: each layout compiles once per
    module, whichever tests read it."""
    config, model, objective, batch, variables = setup
    return functools.cache(
        lambda shape: sharded_loss_and_grads(config, model, objective, variables, batch, shape))


def sharded_loss_and_grads(config, model, objective, variables, batch, shape):
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = shape
    devices = jax.devices()[: int(np.prod(shape))]
    mesh = parallel.make_mesh(config.mesh, devices)
    rules = parallel.axis_rules(config.mesh)
    shardings = parallel.logical_shardings(nn.get_partition_spec(variables), mesh, rules)
    params = jax.device_put(nn.unbox(variables), shardings)["params"]
    sharded_batch = jax.device_put(batch, parallel.batch_sharding(mesh))
    with parallel.activate(mesh, rules):
        fn = jax.jit(lambda p, b: loss_and_grads(model, objective, p, b))
        loss, grads = fn(params, sharded_batch)
    return loss, grads, params


def test_loss_and_gradients_agree_on_every_mesh(setup, on_mesh):
    config, model, objective, batch, variables = setup
    reference_loss, reference_grads = jax.jit(
        lambda p, b: loss_and_grads(model, objective, p, b)
    )(nn.unbox(variables)["params"], batch)
    assert np.isfinite(reference_loss) and reference_loss > 1.0
    for shape in MESHES:
        loss, grads, _ = on_mesh(shape)
        np.testing.assert_allclose(loss, reference_loss, rtol=2e-6, err_msg=str(shape))
        for ref, got in zip(jax.tree.leaves(reference_grads), jax.tree.leaves(grads)):
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-6, err_msg=str(shape))


def test_parameter_shardings_follow_the_rules(on_mesh):
    _, _, params = on_mesh((2, 2, 2))
    block = params["h_0"]
    expected = {
        ("wte", "embedding"): P("tensor", "fsdp"),  # (vocab, embed)
        ("wpe", "embedding"): P(None, "fsdp"),  # (length, embed)
        ("h_0", "attn", "query", "kernel"): P("fsdp", "tensor", None),  # (embed, heads, kv)
        ("h_0", "attn", "out", "kernel"): P("tensor", None, "fsdp"),  # (heads, kv, embed)
        ("h_0", "mlp", "wi", "kernel"): P("fsdp", "tensor"),  # (embed, mlp)
        ("h_0", "mlp", "wo", "kernel"): P("tensor", "fsdp"),  # (mlp, embed)
        ("h_0", "ln_1", "scale"): P("fsdp"),  # (embed,)
    }
    for path, spec in expected.items():
        leaf = params
        for key in path:
            leaf = leaf[key]
        assert leaf.sharding.spec == spec, path
    assert block["attn"]["query"]["kernel"].addressable_shards[0].data.shape == (32, 2, 16)


def test_mesh_sizes_must_multiply_to_the_device_count():
    config = load_config("gpt_tiny", ["mesh.data=3", "mesh.fsdp=1", "mesh.tensor=2"])
    with pytest.raises(ConfigError, match="product equal the device count"):
        parallel.make_mesh(config.mesh)
    config = load_config("gpt_tiny", ["mesh.data=-1", "mesh.fsdp=3"])
    with pytest.raises(ConfigError, match="must divide the device count"):
        parallel.make_mesh(config.mesh)
    config = load_config("gpt_tiny", ["mesh.data=-1", "mesh.tensor=2"])
    assert dict(parallel.make_mesh(config.mesh).shape) == {"data": 4, "fsdp": 1, "tensor": 2}
