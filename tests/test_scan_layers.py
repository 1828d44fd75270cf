"""`model.scan_layers`: one scanned block gives the loop's logits, gradients, training steps
and decoding caches for GPT, BERT and T5, and parameters convert between the two layouts."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmjax import parallel
from lmjax.config import MeshConfig, ModelConfig
from lmjax.errors import ConfigError
from lmjax.models import build_model, stack_layers, unstack_layers
from lmjax.models import gpt as gpt_lib
from lmjax.models import t5 as t5_lib

SMALL = dict(vocab_size=40, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_len=16)
CONFIGS = {
    "gpt": ModelConfig(arch="gpt", **SMALL),
    "llama_remat": ModelConfig(arch="gpt", norm="rmsnorm", position="rope", mlp="swiglu",
                               use_bias=False, n_kv_heads=1, remat="dots_saveable", **SMALL),
    "bert": ModelConfig(arch="bert", remat="full", **SMALL),
    "t5": ModelConfig(arch="t5", norm="rmsnorm", use_bias=False, mlp="relu", n_decoder_layers=3,
                      relpos_buckets=8, relpos_max_distance=12, **SMALL),
}
IDS_BT = np.random.default_rng(1).integers(0, 40, (2, 7)).astype(np.int32)
MASK_BT = np.array([[1] * 7, [1] * 4 + [0] * 3], np.int32)


def scanned(config):
    return dataclasses.replace(config, scan_layers=True)


def inputs(config):
    if config.arch == "t5":
        return {"input_ids": IDS_BT, "decoder_input_ids": IDS_BT[:, :5], "attention_mask": MASK_BT}
    if config.arch == "bert":
        return {"input_ids": IDS_BT, "attention_mask": MASK_BT}
    return {"input_ids": IDS_BT}


def loop_params(config, seed=0):
    """Random loop-layout parameters drawn in numpy (an un-jitted init is slow)."""
    shapes = nn.meta.unbox(jax.eval_shape(build_model(config).init, jax.random.PRNGKey(0),
                                          **inputs(config)))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: rng.normal(0, 0.3, leaf.shape).astype(np.float32),
                        shapes["params"])


def loss_fn(model, with_logits=False):
    def loss(params, feeds):
        logits = model.apply({"params": params}, **feeds)
        value = jnp.mean(jax.nn.logsumexp(logits, -1) - logits[..., 0])
        return (value, logits) if with_logits else value
    return loss


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_scan_gives_the_loops_logits_and_gradients(name):
    config = CONFIGS[name]
    params = loop_params(config)
    stacked = stack_layers(params, config)
    loop_model, scan_model = build_model(config), build_model(scanned(config))
    feeds = inputs(config)
    def logits_and_grads(model, params):
        return jax.jit(jax.value_and_grad(loss_fn(model, True), has_aux=True))(params, feeds)

    (_, loop_logits), loop_grads = logits_and_grads(loop_model, params)
    (_, scan_logits), scan_grads = logits_and_grads(scan_model, stacked)
    np.testing.assert_allclose(scan_logits, loop_logits, atol=1e-5)
    flat_loop = jax.tree_util.tree_leaves_with_path(loop_grads)
    flat_scan = dict(jax.tree_util.tree_leaves_with_path(unstack_layers(scan_grads, config)))
    assert len(flat_loop) == len(flat_scan)
    for path, grad in flat_loop:
        np.testing.assert_allclose(flat_scan[path], grad, atol=1e-5, err_msg=str(path))


def test_scan_trains_the_same_few_steps():
    config = CONFIGS["gpt"]
    params = loop_params(config)
    optimizer = optax.sgd(0.5)  # Adam would magnify float noise in near-zero gradients

    def train(model, params):
        loss = loss_fn(model)

        @jax.jit
        def step(params, opt_state, feeds):
            value, grads = jax.value_and_grad(loss)(params, feeds)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value

        opt_state, losses = optimizer.init(params), []
        for _ in range(3):
            params, opt_state, value = step(params, opt_state, inputs(config))
            losses.append(float(value))
        return params, losses

    loop_final, loop_losses = train(build_model(config), params)
    scan_final, scan_losses = train(build_model(scanned(config)), stack_layers(params, config))
    np.testing.assert_allclose(scan_losses, loop_losses, rtol=1e-5)
    assert loop_losses[-1] < loop_losses[0]
    for got, expected in zip(jax.tree.leaves(unstack_layers(scan_final, config)),
                             jax.tree.leaves(loop_final), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_scanned_gpt_decodes_with_a_stacked_cache():
    config = scanned(CONFIGS["llama_remat"])
    model, params = build_model(config), stack_layers(loop_params(CONFIGS["llama_remat"]), config)
    apply = jax.jit(lambda ids, cache=None: model.apply({"params": params}, ids, cache=cache))
    full_BTV = apply(IDS_BT)
    cache = gpt_lib.init_cache(config, batch=2, length=9)
    assert cache.key_BSGK.shape == (2, 2, 9, 1, 8)
    logits_BTV, cache = apply(IDS_BT[:, :4], cache)
    pieces = [logits_BTV]
    for t in range(4, 7):
        logits_BTV, cache = apply(IDS_BT[:, t:t + 1], cache)
        pieces.append(logits_BTV)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full_BTV, atol=1e-5)
    assert cache.index.tolist() == [7, 7]


def test_scanned_t5_cached_decoder_steps_match_the_full_decoder():
    """Per-step relative bias at the real position, cross K/V computed on the first step
    (the loop layout's cache is checked by tests/test_t5_generate.py)."""
    config = scanned(CONFIGS["t5"])
    params = stack_layers(loop_params(CONFIGS["t5"]), config)
    model = build_model(config)
    feeds = inputs(config)
    full_BTV = jax.jit(model.apply)({"params": params}, **feeds)
    encode = jax.jit(lambda ids, mask: model.apply({"params": params}, ids, mask, method="encode"))
    decode = jax.jit(lambda ids, encoded, mask, cache: model.apply(
        {"params": params}, ids, encoded, mask, cache=cache, method="decode"))
    encoded = encode(feeds["input_ids"], feeds["attention_mask"])
    cache = t5_lib.init_cache(config, batch=2, length=8)
    pieces = []
    for t in range(5):
        logits_BTV, cache = decode(feeds["decoder_input_ids"][:, t:t + 1], encoded,
                                   feeds["attention_mask"], cache)
        pieces.append(logits_BTV)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full_BTV, atol=1e-5)


def test_conversion_round_trips_and_leaves_the_input_alone():
    config = CONFIGS["t5"]
    params = loop_params(config)
    stacked = stack_layers(params, config)
    assert "layer" in stacked["encoder"] and "layer_0" not in stacked["decoder"]
    assert stacked["decoder"]["layer"]["self_attn"]["query"]["kernel"].shape == (3, 16, 2, 8)
    assert "layer_0" in params["encoder"]  # the caller's tree is not edited
    assert stack_layers(stacked, config) is not stacked  # already stacked: unchanged copy
    back = unstack_layers(stacked, config)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for got, expected in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_scan_initialised_model_has_the_stacked_layout():
    """Scan's own init (shapes only) lays parameters out as `stack_layers` does."""
    config = CONFIGS["bert"]
    shapes = jax.eval_shape(build_model(scanned(config)).init, jax.random.PRNGKey(3),
                            **inputs(config))
    assert nn.get_partition_spec(shapes)["params"]["layer"]["mlp"]["wi"]["kernel"] == (
        jax.sharding.PartitionSpec("layers", "embed", "mlp"))
    stacked = stack_layers(loop_params(config), config)
    assert jax.tree.map(np.shape, nn.unbox(shapes)["params"]) == jax.tree.map(np.shape, stacked)
    mesh_config = MeshConfig(data=2, fsdp=2, tensor=2)
    mesh, rules = parallel.make_mesh(mesh_config), parallel.axis_rules(mesh_config)
    shardings = parallel.logical_shardings(nn.get_partition_spec(shapes), mesh, rules)
    kernel = shardings["params"]["layer"]["attn"]["query"]["kernel"]
    assert tuple(kernel.spec) == (None, "fsdp", "tensor", None)  # (layers, embed, heads, kv)


def test_layers_that_differ_cannot_be_stacked():
    """A checkpoint whose layers differ (here one pruned MLP), or that lacks a layer the
    config names, cannot become one scanned block: one-line errors naming the layer."""
    config = CONFIGS["gpt"]
    params = loop_params(config)
    params["h_1"]["mlp"]["wi"]["kernel"] = np.zeros((16, 24), np.float32)
    with pytest.raises(ConfigError, match=r"^cannot scan layers: h_1 differs") as err:
        stack_layers(params, config)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="h_2 is missing"):
        stack_layers(loop_params(config), dataclasses.replace(config, n_layers=3))
