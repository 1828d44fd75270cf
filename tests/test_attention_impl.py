"""`model.attention_impl`: what `auto` resolves to per backend, the one-line errors for a kernel
the backend lacks, and the kernels' call paths against the XLA einsum path: cuDNN's call
through `jax.nn.dot_product_attention` (run by XLA here), splash attention in Pallas's
interpreter, alone and under `shard_map` on a mesh, and the logged fallback to XLA."""

import logging

import flax.linen as nn
import jax
import numpy as np
import pytest

from lmjax import parallel
from lmjax.config import MeshConfig, load_config
from lmjax.errors import ConfigError
from lmjax.models import attention_kernels
from lmjax.models.attention_kernels import cudnn_attend, splash_attend
from lmjax.models.backend import resolve_attention, resolve_dtype
from lmjax.models.layers import MultiHeadAttention, attend, causal_mask

B, T, H, G, K = 2, 128, 4, 2, 16  # splash needs lengths in multiples of 128


def qkv(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(B, T, H, K)).astype(np.float32),
            rng.normal(size=(B, T, G, K)).astype(np.float32),
            rng.normal(size=(B, T, G, K)).astype(np.float32))


def reference(q_BTHK, k_BSGK, v_BSGK, causal, scale):
    """Softmax attention in float64 numpy, grouped kv heads repeated to the query heads."""
    k_BSHK, v_BSHK = (np.repeat(x.astype(np.float64), H // G, axis=2) for x in (k_BSGK, v_BSGK))
    scores_BHTS = np.einsum("bthk,bshk->bhts", q_BTHK.astype(np.float64), k_BSHK) * scale
    if causal:
        scores_BHTS = np.where(np.tril(np.ones((T, T), bool)), scores_BHTS, -np.inf)
    probs_BHTS = np.exp(scores_BHTS - scores_BHTS.max(-1, keepdims=True))
    probs_BHTS /= probs_BHTS.sum(-1, keepdims=True)
    return np.einsum("bhts,bshk->bthk", probs_BHTS, v_BSHK)


@pytest.mark.parametrize("backend, kernel, dtype", [
    ("cpu", "xla", "float32"), ("gpu", "cudnn", "bfloat16"), ("tpu", "splash", "bfloat16"),
])
def test_auto_resolves_by_backend(backend, kernel, dtype):
    assert resolve_attention("auto", on=backend) == kernel
    assert resolve_dtype("auto", on=backend) == dtype
    assert resolve_attention("xla", on=backend) == "xla"
    assert resolve_dtype("float32", on=backend) == "float32"


def test_auto_is_xla_and_float32_on_this_cpu():
    config = load_config("gpt_tiny")
    assert (config.model.attention_impl, config.model.dtype) == ("auto", "auto")
    assert resolve_attention(config.model.attention_impl) == "xla"
    assert resolve_dtype(config.model.dtype) == "float32"


@pytest.mark.parametrize("config, overrides, message", [
    ("gpt_tiny", ["model.attention_impl=cudnn"],
     "model.attention_impl=cudnn needs a GPU but JAX's backend is cpu: set model.attention_impl=auto"),
    ("gpt_tiny", ["model.attention_impl=splash"],
     "model.attention_impl=splash needs a TPU but JAX's backend is cpu: set model.attention_impl=auto"),
    ("t5_tiny", ["model.attention_impl=splash"], "cannot add T5's relative position bias"),
    ("gpt_tiny", ["model.attention_impl=flash"], "model.attention_impl='flash' is not one of"),
])
def test_kernels_the_backend_lacks_are_one_line_errors(config, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(config, overrides)
    assert "\n" not in str(err.value)


def test_cudnn_needs_bfloat16_on_a_gpu(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.raises(ConfigError, match="cudnn needs bfloat16 compute: set model.dtype=bfloat16"):
        load_config("gpt_tiny", ["model.attention_impl=cudnn", "model.dtype=float32"])
    load_config("gpt_tiny", ["model.attention_impl=cudnn"])  # auto dtype is bfloat16 there


@pytest.mark.parametrize("causal", [True, False])
def test_xla_path_and_cudnn_call_equal_a_numpy_reference(causal):
    q, k, v = qkv()
    want = reference(q, k, v, causal, scale=0.3)
    mask = causal_mask(T, T) if causal else None
    np.testing.assert_allclose(attend(q, k, v, mask, scale=0.3), want, rtol=1e-4, atol=1e-5)
    got = cudnn_attend(q, k, v, causal=causal, scale=0.3, implementation="xla")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_splash_kernel_equals_the_reference_with_gradients():
    q, k, v = qkv(1)
    np.testing.assert_allclose(splash_attend(q, k, v, causal=True, scale=None, interpret=True),
                               reference(q, k, v, True, K**-0.5), rtol=1e-4, atol=1e-5)

    def loss(attention):
        return lambda *xs: (attention(*xs) * np.arange(K)).sum()

    def splash(q, k, v):
        return splash_attend(q, k, v, causal=True, scale=None, interpret=True)

    got = jax.grad(loss(splash), argnums=(0, 1, 2))(q, k, v)
    want = jax.grad(loss(lambda q, k, v: attend(q, k, v, causal_mask(T, T))), argnums=(0, 1, 2))(q, k, v)
    for got_grad, want_grad in zip(got, want):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-4)


def attention_layer(impl):
    return MultiHeadAttention(d_model=H * K, n_heads=H, n_kv_heads=G, head_dim=K,
                              attention_impl=impl)


def test_splash_layer_under_shard_map_on_a_mesh_equals_xla():
    """Batch over data, heads over tensor: the kernel runs per device on its shard."""
    x_BTD = np.random.default_rng(2).normal(size=(B, T, H * K)).astype(np.float32)
    params = nn.unbox(attention_layer("xla").init(jax.random.key(0), x_BTD, causal=True))
    want = attention_layer("xla").apply(params, x_BTD, causal=True)
    mesh_config = MeshConfig(data=2, tensor=2, fsdp=1)
    devices = jax.devices()[:4]
    with parallel.activate(parallel.make_mesh(mesh_config, devices), parallel.axis_rules(mesh_config)):
        got = jax.jit(lambda p, x: attention_layer("splash").apply(p, x, causal=True))(params, x_BTD)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_case_the_kernel_cannot_serve_runs_xla_and_says_why(caplog):
    attention_kernels.log_fallback.cache_clear()
    x_BTD = np.random.default_rng(3).normal(size=(B, 8, H * K)).astype(np.float32)
    mask_B1S = np.ones((B, 1, 8), bool)
    params = attention_layer("xla").init(jax.random.key(0), x_BTD)
    with caplog.at_level(logging.WARNING, logger=attention_kernels.__name__):
        got = attention_layer("splash").apply(params, x_BTD, mask=mask_B1S)
    want = attention_layer("xla").apply(params, x_BTD, mask=mask_B1S)
    np.testing.assert_array_equal(got, want)
    assert "model.attention_impl=splash cannot serve a padding or packed-segment mask" in caplog.text



@pytest.mark.parametrize("arch, reason", [
    ("gpt", "a padding or packed-segment mask"),
    ("bert", "a padding or packed-segment mask"),
    ("t5", "an additive attention bias (T5's relative positions)"),
])
def test_every_family_passes_the_config_to_its_attention(arch, reason, caplog):
    """Traced only (eval_shape): a model built with attention_impl=splash reaches the kernel
    choice in its layers, which fall back, with the reason, on a padded batch."""
    from lmjax.config import ModelConfig
    from lmjax.models import build_model

    attention_kernels.log_fallback.cache_clear()
    config = ModelConfig(arch=arch, vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_ff=64,
                         max_len=16, position={"t5": "relative"}.get(arch, "learned"),
                         attention_impl="splash")
    ids_BT, mask_BT = np.zeros((1, 16), np.int32), np.ones((1, 16), np.int32)
    inputs = {"input_ids": ids_BT, "attention_mask": mask_BT}
    if arch == "t5":
        inputs["decoder_input_ids"] = ids_BT
    with caplog.at_level(logging.WARNING, logger=attention_kernels.__name__):
        jax.eval_shape(build_model(config).init, jax.random.key(0), **inputs)
    assert f"model.attention_impl=splash cannot serve {reason}" in caplog.text


@pytest.mark.parametrize("blocks", [2, 4])
def test_causal_attention_in_blocks_and_tiles_equals_full_attention(blocks):
    """Query blocks (under 64 rows) and flash-style tiles (64 rows and up, or called directly)
    score the same pairs as the full causal softmax, grouped kv heads included."""
    from lmjax.models.layers import TILED_MIN_ROWS, blocked_causal_attend, tiled_causal_attend

    q, k, v = qkv(1)
    expected = reference(q, k, v, causal=True, scale=K**-0.5)
    np.testing.assert_allclose(blocked_causal_attend(q, k, v, blocks), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tiled_causal_attend(q, k, v, blocks), expected, rtol=1e-4, atol=1e-5)
    assert (T // blocks >= TILED_MIN_ROWS) == (blocks == 2)


def test_tiled_attention_has_the_gradient_of_full_attention():
    from lmjax.models.layers import tiled_causal_attend

    q, k, v = qkv(2)

    def loss(attention):
        return lambda q, k, v: (attention(q, k, v) ** 2).sum()

    tiled = jax.grad(loss(lambda q, k, v: tiled_causal_attend(q, k, v, 4)), argnums=(0, 1, 2))(q, k, v)
    full = jax.grad(loss(lambda q, k, v: attend(q, k, v, causal_mask(T, T))), argnums=(0, 1, 2))(q, k, v)
    for mine, expected in zip(tiled, full):
        np.testing.assert_allclose(mine, expected, rtol=1e-4, atol=1e-4)
