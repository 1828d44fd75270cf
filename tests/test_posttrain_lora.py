"""LoRA: the merged forward equals the adapter forward, merge/unmerge invert, only adapters
train, adapters save alone, the rank is checked."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from lmjax.config import TrainConfig
from lmjax.errors import ConfigError
from lmjax.models.attention import CrossKV
from lmjax.posttrain import lora
from lmjax.posttrain.packing import Tokenized, pack
from lmjax.posttrain.sft import train_sft
from posttrain_helpers import tiny_model

RANK, ALPHA = 2, 4.0
CONFIG = lora.LoraConfig(rank=RANK, alpha=ALPHA)


def random_adapters(params, config=CONFIG, seed=1):
    """Adapters with nonzero B, so merging changes the model."""
    adapters = lora.init_adapters(params, config)
    leaves, tree = jax.tree.flatten(adapters)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [0.1 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def adapter_forward(model, params, adapters, ids):
    """x·W + (α/r)·(x·A)·B at every adapted projection, computed by hooking each projection's
    input and output (each Dense call, and the fused query/key/value of self-attention): an
    independent route from merging the weights."""
    pairs = traverse_util.flatten_dict(adapters)

    def delta(path, x, shape):
        name = path[-1]
        a, b = pairs[(*path, "a")], pairs[(*path, "b")]
        n_in = lora.INPUT_DIMS.get(name, 1)
        x_flat = x.reshape(*x.shape[:x.ndim - n_in], -1)
        return (ALPHA / RANK * (x_flat @ a) @ b).reshape(shape)  # Hu et al.'s α/r, not lora's own scale

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        path = tuple(context.module.path)
        if context.method_name == "_self_projections":
            q, (k, v) = out
            if context.module.n_kv_heads == context.module.n_heads:  # else query is its own Dense call
                q = q + delta((*path, "query"), args[0], q.shape)
            k = k + delta((*path, "key"), args[0], k.shape)
            v = v + delta((*path, "value"), args[0], v.shape)
            return q, CrossKV(k, v)
        if context.method_name == "__call__" and path and path[-1] in CONFIG.targets:
            out = out + delta(path, args[0], out.shape)
        return out

    def forward(params, adapters):
        with nn.intercept_methods(interceptor):
            return model.apply({"params": params}, ids)

    return jax.jit(forward)(params, adapters)


@pytest.mark.parametrize("n_kv_heads", [2, 4])  # grouped kv heads, and all three projections fused
def test_merged_forward_equals_adapter_forward(n_kv_heads):
    model, params = tiny_model(n_kv_heads=n_kv_heads)
    adapters = random_adapters(params)
    ids = jnp.array([[1, 5, 9, 33, 2, 7]])
    merged = model.apply({"params": lora.merge(params, adapters, CONFIG)}, ids)
    base = model.apply({"params": params}, ids)
    assert not np.allclose(merged, base, atol=1e-4)
    np.testing.assert_allclose(merged, adapter_forward(model, params, adapters, ids), atol=2e-5, rtol=1e-4)


def test_unmerge_restores_base_and_fresh_adapters_change_nothing():
    model, params = tiny_model()
    adapters = random_adapters(params)
    restored = lora.unmerge(lora.merge(params, adapters, CONFIG), adapters, CONFIG)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), restored, params)
    fresh = lora.merge(params, lora.init_adapters(params, CONFIG), CONFIG)  # B = 0
    jax.tree.map(np.testing.assert_array_equal, fresh, params)


def test_trainable_count_is_rank_times_in_plus_out():
    _, params = tiny_model()
    trained = lora.LoraTuning(CONFIG).init(params)
    # One layer (d=32, 4 heads of 8, 2 kv heads, d_ff=64): q 32→32, k 32→16, v 32→16,
    # out 32→32, wi 32→64, wi_up 32→64, wo 64→32.
    per_layer = sum(2 * (i + o) for i, o in [(32, 32), (32, 16), (32, 16), (32, 32), (32, 64), (32, 64), (64, 32)])
    assert lora.LoraTuning(CONFIG).trainable_count(trained) == per_layer


def fit(steps: int, batch_size: int) -> TrainConfig:
    """What the old FitConfig(steps, batch_size, lr=1e-2, log_every=1) meant."""
    return TrainConfig(steps=steps, global_batch_size=batch_size, lr=1e-2, warmup_steps=min(10, steps - 1),
                       weight_decay=0.0, log_every=1)


def test_only_adapters_change_under_training(tmp_path):
    model, params = tiny_model()
    rng = np.random.default_rng(0)
    rows = pack([Tokenized(rng.integers(3, 500, 12).astype(np.int32), 4) for _ in range(8)], 24)
    tuning = lora.LoraTuning(CONFIG)
    merged, history, trained = train_sft(model, params, rows, fit(8, 2), tmp_path / "run", tuning)
    jax.tree.map(np.testing.assert_array_equal, trained["base"], params)
    assert any(float(jnp.abs(leaf["b"]).max()) > 0 for leaf in traverse_util.flatten_dict(
        trained["lora"], keep_empty_nodes=False, is_leaf=lambda _, x: "b" in x).values())
    assert history[-1]["loss"] < history[0]["loss"]
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), merged,
                 lora.merge(params, trained["lora"], CONFIG))


def test_adapters_save_alone_and_load(tmp_path):
    _, params = tiny_model()
    adapters = random_adapters(params)
    lora.save_adapters(tmp_path / "adapters", adapters, CONFIG)
    loaded, config = lora.load_adapters(tmp_path / "adapters")
    assert config == CONFIG
    jax.tree.map(np.testing.assert_array_equal, loaded, adapters)
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["adapters.npz", "lora.json"]


def test_rank_larger_than_layer_is_one_line_error():
    _, params = tiny_model()
    with pytest.raises(ConfigError, match=r"LoRA rank 40 exceeds layer h_0/attn/key \(32 -> 16\)"):
        lora.init_adapters(params, lora.LoraConfig(rank=40))


def test_lora_sft_on_a_mesh_equals_one_device_with_adapters_sharded_like_their_kernels(tmp_path):
    """data 2 × fsdp 2 × tensor 2 over the 8 test devices: the same losses and adapters as
    on one device; A takes its kernel's input sharding, B its output sharding."""
    from lmjax.config import MeshConfig
    from lmjax.posttrain.placement import Placement

    model, params = tiny_model(n_kv_heads=4)
    rng = np.random.default_rng(0)
    rows = pack([Tokenized(rng.integers(3, 500, 12).astype(np.int32), 4) for _ in range(16)], 24)
    config = fit(4, 4)
    tuning = lora.LoraTuning(CONFIG)
    _, alone, trained_alone = train_sft(model, params, rows, config, tmp_path / "alone", tuning)
    placement = Placement.from_config(MeshConfig(data=2, fsdp=2, tensor=2))
    _, meshed, trained = train_sft(model, params, rows, config, tmp_path / "meshed", tuning, placement=placement)
    np.testing.assert_allclose([r["loss"] for r in meshed], [r["loss"] for r in alone], rtol=1e-5)
    flat, flat_alone = (traverse_util.flatten_dict(t["lora"]) for t in (trained, trained_alone))
    for path, value in flat.items():
        np.testing.assert_allclose(value, flat_alone[path], atol=1e-6)
    def spec(array):
        return tuple(array.sharding.spec) + (None,) * (array.ndim - len(array.sharding.spec))

    query = ("h_0", "attn", "query")
    assert spec(flat[(*query, "a")]) == ("fsdp", None)  # embed -> fsdp (the kernel's input)
    assert spec(flat[(*query, "b")]) == (None, "tensor")  # heads -> tensor (its output)
    assert spec(traverse_util.flatten_dict(trained["base"])[(*query, "kernel")]) == ("fsdp", "tensor", None)


def test_lora_dpo_on_a_mesh_equals_one_device(tmp_path):
    from lmjax.config import MeshConfig
    from lmjax.posttrain import dpo
    from lmjax.posttrain.packing import pad_rows
    from lmjax.posttrain.placement import Placement

    model, params = tiny_model(n_kv_heads=4)
    rng = np.random.default_rng(1)
    prompts = [rng.integers(3, 500, 4) for _ in range(8)]
    rows = {}
    for name, (low, high) in (("chosen", (3, 60)), ("rejected", (400, 500))):
        items = [Tokenized(np.concatenate([p, rng.integers(low, high, 6)]).astype(np.int32), 4) for p in prompts]
        rows.update({f"{name}_{key}": value for key, value in pad_rows(items, 12).items()})
    config = fit(3, 4)
    tuning = lora.LoraTuning(CONFIG)
    _, alone, _ = dpo.train_dpo(model, params, params, rows, config, tmp_path / "alone", tuning=tuning)
    placement = Placement.from_config(MeshConfig(data=2, fsdp=2, tensor=2))
    _, meshed, _ = dpo.train_dpo(model, params, params, rows, config, tmp_path / "meshed", tuning=tuning,
                                 placement=placement)
    np.testing.assert_allclose([r["loss"] for r in meshed], [r["loss"] for r in alone], rtol=1e-5)
    assert alone[-1]["loss"] < alone[0]["loss"]
