"""`model.attention_impl`: what `auto` resolves to per backend, the one-line errors for a kernel
the backend lacks, and the kernels' call paths against the XLA einsum path: cuDNN's call
through `jax.nn.dot_product_attention` (run by XLA here), splash attention in Pallas's
interpreter, alone and under `shard_map` on a mesh, and the logged fallback to XLA; and the
XLA path's causal query blocks and flash-style tiles, outputs and gradients, against float64
attention with grouped kv heads."""

import functools
import logging

import flax.linen as nn
import jax
import numpy as np
import pytest

from lmjax import parallel
from lmjax.config import MeshConfig, load_config
from lmjax.errors import ConfigError
from lmjax.models import attention_kernels
from lmjax.models.attention import (
    TILED_MIN_ROWS, MultiHeadAttention, attend, blocked_causal_attend, causal_mask,
    tiled_causal_attend,
)
from lmjax.models.attention_kernels import cudnn_attend, splash_attend
from lmjax.models.platform import attention_kernel, compute_dtype_name

B, T, H, G, K = 2, 128, 4, 2, 16  # splash needs lengths in multiples of 128


@functools.cache
def qkv(seed=0):
    """Queries, keys, values and an output cotangent (the gradient of a loss Σ out·d_out)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(B, T, H, K)).astype(np.float32),
            rng.normal(size=(B, T, G, K)).astype(np.float32),
            rng.normal(size=(B, T, G, K)).astype(np.float32),
            rng.normal(size=(B, T, H, K)).astype(np.float32))


@functools.cache
def reference(seed, causal, scale):
    """Softmax attention of `qkv(seed)` in float64 numpy, grouped kv heads repeated to the
    query heads, and its gradients (q, k, v) for the cotangent, by the chain rule written out:
    dV = Pᵀ·dO, dS = P ⊙ (dO·Vᵀ − rowsum(P ⊙ dO·Vᵀ)), dQ = scale·dS·K, dK = scale·dSᵀ·Q,
    the gradients of a kv head summed over the query heads that share it."""
    q_BTHK, k_BSGK, v_BSGK, d_out_BTHK = (x.astype(np.float64) for x in qkv(seed))
    k_BSHK, v_BSHK = (np.repeat(x, H // G, axis=2) for x in (k_BSGK, v_BSGK))
    scores_BHTS = np.einsum("bthk,bshk->bhts", q_BTHK, k_BSHK) * scale
    if causal:
        scores_BHTS = np.where(np.tril(np.ones((T, T), bool)), scores_BHTS, -np.inf)
    probs_BHTS = np.exp(scores_BHTS - scores_BHTS.max(-1, keepdims=True))
    probs_BHTS /= probs_BHTS.sum(-1, keepdims=True)
    out_BTHK = np.einsum("bhts,bshk->bthk", probs_BHTS, v_BSHK)
    d_probs_BHTS = np.einsum("bthk,bshk->bhts", d_out_BTHK, v_BSHK)
    d_scores_BHTS = probs_BHTS * (d_probs_BHTS - (d_probs_BHTS * probs_BHTS).sum(-1, keepdims=True))
    d_q = np.einsum("bhts,bshk->bthk", d_scores_BHTS, k_BSHK) * scale
    d_k_BSHK = np.einsum("bhts,bthk->bshk", d_scores_BHTS, q_BTHK) * scale
    d_v_BSHK = np.einsum("bhts,bthk->bshk", probs_BHTS, d_out_BTHK)
    d_k, d_v = (x.reshape(B, T, G, H // G, K).sum(3) for x in (d_k_BSHK, d_v_BSHK))
    return out_BTHK, (d_q, d_k, d_v)


# Compiling is most of these tests' time, and XLA's CPU backend compiles the unrolled blocks
# and tiles about 3x faster without LLVM's optimisations; at these shapes they run in
# milliseconds either way, and the float64 references are unchanged.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)


@functools.partial(fast_jit, static_argnums=(0, 5))
def output_and_grads(attention, q, k, v, d_out, n):
    """`attention(q, k, v, n)` and its gradients for the cotangent `d_out`: one compiled
    function per attention and `n`."""
    out, pullback = jax.vjp(lambda q, k, v: attention(q, k, v, n), q, k, v)
    return out, pullback(d_out)


def assert_output_and_grads_match(got, want):
    (out, grads), (want_out, want_grads) = got, want
    np.testing.assert_allclose(out, want_out, rtol=1e-4, atol=1e-5)
    for got_grad, want_grad in zip(grads, want_grads):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend, kernel, dtype", [
    ("cpu", "xla", "float32"), ("gpu", "cudnn", "bfloat16"), ("tpu", "splash", "bfloat16"),
])
def test_auto_resolves_by_backend(backend, kernel, dtype):
    assert attention_kernel("auto", platform=backend) == kernel
    assert compute_dtype_name("auto", platform=backend) == dtype
    assert attention_kernel("xla", platform=backend) == "xla"
    assert compute_dtype_name("float32", platform=backend) == "float32"


def test_auto_is_xla_and_float32_on_this_cpu():
    config = load_config("gpt_tiny")
    assert (config.model.attention_impl, config.model.dtype) == ("auto", "auto")
    assert attention_kernel(config.model.attention_impl) == "xla"
    assert compute_dtype_name(config.model.dtype) == "float32"


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
    q, k, v, _ = qkv()
    want, _ = reference(0, causal, scale=0.3)
    mask = causal_mask(T, T) if causal else None
    got = fast_jit(lambda q, k, v: attend(q, k, v, mask, scale=0.3))(q, k, v)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    got = fast_jit(lambda q, k, v: cudnn_attend(q, k, v, causal=causal, scale=0.3,
                                                implementation="xla"))(q, k, v)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def splash_causal(q, k, v, _):
    return splash_attend(q, k, v, causal=True, scale=None, interpret=True)


def test_splash_kernel_equals_the_reference_with_gradients():
    got = output_and_grads(splash_causal, *qkv(1), None)
    assert_output_and_grads_match(got, reference(1, True, K**-0.5))


def attention_layer(impl):
    return MultiHeadAttention(d_model=H * K, n_heads=H, n_kv_heads=G, head_dim=K,
                              attention_impl=impl)


@pytest.fixture(scope="module")
def layer_params():
    """The layer's parameters (their shapes do not depend on the length), initialised in one
    compiled function rather than op by op."""
    x_BTD = np.zeros((B, T, H * K), np.float32)
    init = fast_jit(lambda key: attention_layer("xla").init(key, x_BTD, causal=True))
    return nn.unbox(init(jax.random.key(0)))


def test_splash_layer_under_shard_map_on_a_mesh_equals_xla(layer_params):
    """Batch over data, heads over tensor: the kernel runs per device on its shard."""
    x_BTD = np.random.default_rng(2).normal(size=(B, T, H * K)).astype(np.float32)
    want = attention_layer("xla").apply(layer_params, x_BTD, causal=True)
    mesh_config = MeshConfig(data=2, tensor=2, fsdp=1)
    devices = jax.devices()[:4]
    splash = fast_jit(lambda p, x: attention_layer("splash").apply(p, x, causal=True))
    with parallel.activate(parallel.make_mesh(mesh_config, devices), parallel.axis_rules(mesh_config)):
        got = splash(layer_params, x_BTD)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_case_the_kernel_cannot_serve_runs_xla_and_says_why(caplog, layer_params):
    attention_kernels.log_fallback.cache_clear()
    x_BTD = np.random.default_rng(3).normal(size=(B, 8, H * K)).astype(np.float32)
    mask_B1S = np.ones((B, 1, 8), bool)
    with caplog.at_level(logging.WARNING, logger=attention_kernels.__name__):
        got = fast_jit(lambda p: attention_layer("splash").apply(p, x_BTD, mask=mask_B1S))(layer_params)
    want = fast_jit(lambda p: attention_layer("xla").apply(p, x_BTD, mask=mask_B1S))(layer_params)
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
def test_causal_attention_in_blocks_and_tiles_equals_full_attention_with_gradients(blocks):
    """Query blocks (under 64 rows) and flash-style tiles (64 rows and up, or called directly)
    score the same pairs as the full causal softmax, grouped kv heads included, and have its
    gradients (at 4 tiles each query row's online softmax is rescaled by later key blocks)."""
    want = reference(1, True, K**-0.5)
    assert_output_and_grads_match(output_and_grads(blocked_causal_attend, *qkv(1), blocks), want)
    assert_output_and_grads_match(output_and_grads(tiled_causal_attend, *qkv(1), blocks), want)
    assert (T // blocks >= TILED_MIN_ROWS) == (blocks == 2)
