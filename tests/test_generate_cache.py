"""The key/value cache: decoding token by token gives the logits of the full forward pass,
and cached and uncached generation agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from lmjax.config import ModelConfig
from lmjax.decoding import Generator, Sampling
from lmjax.models import build_model
from lmjax.models.gpt import init_cache

GPT2_SHAPE = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16,
                         tie_embeddings=False)
LLAMA_SHAPE = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48,
                          max_len=16, norm="rmsnorm", position="rope", mlp="swiglu", use_bias=False)


def _model_and_params(config):
    """Random parameters drawn in numpy: an un-jitted `init` runs op by op and is slow."""
    model = build_model(config)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32)))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda leaf: rng.normal(0, 0.2, leaf.shape).astype(np.float32), shapes["params"])
    return model, params


@pytest.mark.parametrize("config", [GPT2_SHAPE, LLAMA_SHAPE], ids=["gpt2", "llama_gqa"])
def test_prefill_then_steps_match_the_full_forward_pass(config):
    model, params = _model_and_params(config)
    ids_BT = jax.random.randint(jax.random.PRNGKey(1), (2, 9), 0, config.vocab_size)
    apply = jax.jit(lambda ids, cache=None: model.apply({"params": params}, ids, cache=cache))
    full_BTV = apply(ids_BT)
    logits_BTV, cache = apply(ids_BT[:, :5], init_cache(config, batch=2, length=12))
    pieces = [logits_BTV]
    for t in range(5, 9):
        logits_BTV, cache = apply(ids_BT[:, t:t + 1], cache)
        pieces.append(logits_BTV)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full_BTV, atol=1e-5)
    assert [int(layer.index) for layer in cache] == [9, 9]


def test_cached_and_uncached_generation_agree_on_a_batch():
    """Greedy and sampled, on a learned-position model, up to the end of its context."""
    model, params = _model_and_params(GPT2_SHAPE)
    prompts_BT = np.array([[1, 2, 3], [4, 5, 6]])
    for sampling in (Sampling(temperature=0), Sampling(temperature=1.0, top_k=10)):
        generator = Generator(model, params, sampling)
        cached = generator.generate(prompts_BT, max_new_tokens=100, seed=7)
        uncached = generator.generate(prompts_BT, max_new_tokens=100, seed=7, use_cache=False)
        assert cached == uncached
        assert [len(row) for row in cached] == [14, 14]  # context 16: positions 3..15, plus one
