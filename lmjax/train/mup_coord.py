"""µP's coordinate check (Yang et al. 2022, "Tensor Programs V", section 7 / Fig. 5): train
GPTs of several widths for a few Adam steps on one fixed batch and record each layer's mean
|activation|. Under µP those scales are flat in width; under the standard parametrization
(one lr, init std fixed) the updates' contribution grows ∝ width and so do the activations
and logits. A wrong multiplier in `lmjax.train.mup` or the models shows up as a slope.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmjax.config import ModelConfig, TrainConfig
from lmjax.models import build_model
from lmjax.train import mup
from lmjax.train.optimizer import make_optimizer


def coord_model(width: int, parametrization: str, base_width: int, *, n_layers: int = 2,
                n_heads: int = 4, vocab_size: int = 256, seq_len: int = 32) -> ModelConfig:
    """A float32 GPT of `width` whose head count stays fixed (so d_head and d_ff grow)."""
    return ModelConfig(arch="gpt", vocab_size=vocab_size, d_model=width, n_layers=n_layers,
                       n_heads=n_heads, d_ff=4 * width, max_len=seq_len, dtype="float32",
                       parametrization=parametrization,
                       mup_base_width=base_width if parametrization == "mup" else 0)


def constant_lr(lr: float, steps: int) -> TrainConfig:
    """Adam at one learning rate, no decay, clipping or warm-up: the update is µP's alone."""
    return TrainConfig(lr=lr, steps=steps, warmup_steps=0, min_lr_ratio=1.0, weight_decay=0.0,
                       grad_clip=0.0)


def init_params(model: nn.Module, ids: jax.Array, seed: int) -> Any:
    boxed = model.init(jax.random.key(seed), ids)["params"]
    return nn.unbox(mup.scale_init(boxed, model.config))


def causal_loss(model: nn.Module, params: Any, ids: jax.Array) -> jax.Array:
    logits = model.apply({"params": params}, ids[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()


def activation_scales(model: nn.Module, params: Any, ids: jax.Array) -> dict[str, float]:
    """Mean |x| of the token embedding, each block's output and the logits."""
    logits, state = model.apply({"params": params}, ids[:, :-1],
                                capture_intermediates=True, mutable=["intermediates"])
    inter = state["intermediates"]
    scales = {"embedding": inter["wte"]["__call__"][0]}
    for layer in range(model.config.n_layers):
        scales[f"block_{layer}"] = inter[f"h_{layer}"]["__call__"][0][0]
    scales["logits"] = logits
    return {name: float(jnp.abs(x).mean()) for name, x in scales.items()}


def train_scales(config: ModelConfig, train: TrainConfig, ids: jax.Array,
                 seed: int = 0) -> list[dict[str, float]]:
    """Activation scales before training and after each of `train.steps` Adam steps on `ids`."""
    model = build_model(config)
    params = init_params(model, ids[:, :-1], seed)
    optimizer = make_optimizer(train, mup.lr_scaling(model, {"input_ids": ids[:, :-1]}))
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(lambda p: causal_loss(model, p, ids))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    history = [activation_scales(model, params, ids)]
    for _ in range(train.steps):
        params, opt_state = step(params, opt_state)
        history.append(activation_scales(model, params, ids))
    return history


def fixed_batch(vocab_size: int, batch: int, seq_len: int, seed: int = 0) -> jax.Array:
    """The one batch every width trains on (seeded token ids)."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, vocab_size, (batch, seq_len + 1)), jnp.int32)


def coord_check(parametrization: str, widths: list[int], *, base_width: int, lr: float,
                steps: int, seed: int = 0, batch: int = 8, seq_len: int = 32,
                **model_kwargs: Any) -> dict[int, list[dict[str, float]]]:
    """Each width's activation scales per step (`train_scales`) for one parametrization."""
    results = {}
    for width in widths:
        config = coord_model(width, parametrization, base_width, seq_len=seq_len, **model_kwargs)
        ids = fixed_batch(config.vocab_size, batch, seq_len, seed)
        results[width] = train_scales(config, constant_lr(lr, steps), ids, seed)
    return results


def width_slope(widths: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) on log(width): 0 when flat, 1 when ∝ width."""
    x = np.log(np.asarray(widths, float))
    y = np.log(np.asarray(values, float))
    return float(np.polyfit(x, y, 1)[0]) if len(x) > 1 and math.isfinite(y.sum()) else math.nan
