"""AdamW with linear warm-up, cosine decay and global-norm clipping (the GPT-3 recipe)."""

from __future__ import annotations

import jax
import optax

from lmjax.config import TrainConfig


def learning_rate_schedule(train: TrainConfig) -> optax.Schedule:
    """0 → lr over `warmup_steps`, then cosine down to lr·min_lr_ratio at `steps`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=train.lr,
        warmup_steps=train.warmup_steps,
        decay_steps=max(train.steps, train.warmup_steps + 1),
        end_value=train.lr * train.min_lr_ratio,
    )


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
