"""AdamW with linear warm-up, cosine or warmup-stable-decay (WSD) learning rates and
global-norm clipping (the GPT-3 recipe, and Hägele et al. 2024's WSD)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from lmjax.config import TrainConfig


def learning_rate_schedule(train: TrainConfig) -> optax.Schedule:
    """`train.schedule`: cosine (0 → lr over `warmup_steps`, then cosine down to
    lr·min_lr_ratio at `steps`) or wsd (`wsd_schedule`)."""
    if train.schedule == "wsd":
        return wsd_schedule(train)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=train.lr,
        warmup_steps=train.warmup_steps,
        decay_steps=max(train.steps, train.warmup_steps + 1),
        end_value=train.lr * train.min_lr_ratio,
    )


def wsd_decay_start(steps: int, decay_fraction: float) -> int:
    """The last stable step + 1: the decay takes the final decay_fraction·steps steps, rounded
    half up. Until then the rate does not depend on `steps`, which is why a cooldown branch
    can start from a longer run's checkpoint at this step (lmjax.sweep.branches)."""
    return steps - math.floor(decay_fraction * steps + 0.5)


def wsd_schedule(train: TrainConfig) -> optax.Schedule:
    """Warmup-stable-decay (Hägele et al. 2024, section 3): 0 → lr linearly over
    `warmup_steps`, lr until `wsd_decay_start`, then down to lr·min_lr_ratio at `steps` along
    `decay_shape`: linear, 1 − x, or 1-sqrt, 1 − √x, with x the share of the decay done (the
    paper decays to 0: min_lr_ratio=0)."""
    peak, floor = train.lr, train.lr * train.min_lr_ratio
    start = wsd_decay_start(train.steps, train.decay_fraction)
    length = max(train.steps - start, 1)
    warmup = max(train.warmup_steps, 1)

    def schedule(count):
        step = jnp.asarray(count, jnp.float32)
        done = jnp.clip((step - start) / length, 0.0, 1.0)
        shape = 1.0 - (jnp.sqrt(done) if train.decay_shape == "1-sqrt" else done)
        decayed = floor + (peak - floor) * shape
        warming = peak * step / warmup
        return jnp.where(step < train.warmup_steps, warming, jnp.where(step < start, peak, decayed))

    return schedule


def decay_mask(params):
    """Weight decay on matrices (kernels, embeddings) only, not on biases or norm scales."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(train: TrainConfig,
                   per_parameter: optax.GradientTransformation | None = None
                   ) -> optax.GradientTransformation:
    """Clipping, then AdamW. `per_parameter` rescales each parameter's Adam direction before
    weight decay and the learning rate: µP's lr multipliers (`lmjax.train.mup.lr_scaling`),
    which like Microsoft's MuAdamW leave lr·weight_decay alone; None: `optax.adamw` itself."""
    return optax.chain(
        optax.clip_by_global_norm(train.grad_clip) if train.grad_clip > 0 else optax.identity(),
        adamw(train, per_parameter),
    )


def adamw(train: TrainConfig, per_parameter: optax.GradientTransformation | None):
    """`optax.adamw`'s own chain (same state, so checkpoints restore), with `per_parameter`
    after the Adam direction when given."""
    return optax.chain(
        optax.scale_by_adam(b1=train.b1, b2=train.b2, eps=train.eps),
        *([per_parameter] if per_parameter is not None else []),
        optax.add_decayed_weights(train.weight_decay, decay_mask),
        optax.scale_by_learning_rate(learning_rate_schedule(train)),
    )
