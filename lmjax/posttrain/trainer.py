"""The update loop every post-training method shares: jitted loss-and-gradient steps with the
library's optimizer (`lmjax.train.optimizer`: AdamW, warm-up, cosine decay, clipping), over
whatever is trained (all parameters, or LoRA adapters: `Tuning`)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax
import optax

from lmjax.config import TrainConfig
from lmjax.errors import ConfigError
from lmjax.posttrain.placement import Placement
from lmjax.train.optimizer import make_optimizer
from lmjax.train.state import count_params

LossFn = Callable[[Any, dict], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class FitConfig:
    steps: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be > 0")

    def optimizer(self) -> optax.GradientTransformation:
        return make_optimizer(TrainConfig(
            steps=self.steps, lr=self.lr, warmup_steps=min(self.warmup_steps, self.steps - 1),
            weight_decay=self.weight_decay, grad_clip=self.grad_clip, min_lr_ratio=0.1,
        ))


class Tuning(Protocol):
    """What training updates: `init` makes the trained tree from the model's parameters
    (`names` its logical axes from theirs), `model_params` turns it back into parameters for the forward pass, `optimizer` wraps
    the base optimizer (e.g. to freeze all but adapters), `merged` is the final model."""

    def init(self, params: Any) -> Any: ...
    def names(self, param_names: Any) -> Any: ...
    def model_params(self, trained: Any) -> Any: ...
    def optimizer(self, base: optax.GradientTransformation, trained: Any) -> optax.GradientTransformation: ...
    def merged(self, trained: Any) -> Any: ...
    def trainable_count(self, trained: Any) -> int: ...


class FullTuning:
    """Every parameter trains."""

    def init(self, params: Any) -> Any:
        return params

    def names(self, param_names: Any) -> Any:
        return param_names

    def model_params(self, trained: Any) -> Any:
        return trained

    def optimizer(self, base: optax.GradientTransformation, trained: Any) -> optax.GradientTransformation:
        return base

    def merged(self, trained: Any) -> Any:
        return trained

    def trainable_count(self, trained: Any) -> int:
        return count_params(trained)


def update_step(loss_fn: LossFn, optimizer: optax.GradientTransformation) -> Callable:
    """The jitted step `(trained, opt_state, batch) -> (trained, opt_state, loss, metrics)`:
    the gradient of `loss_fn(trained, batch)` through `optimizer`."""
    @jax.jit
    def update(trained, opt_state, batch):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(trained, batch)
        updates, opt_state = optimizer.update(grads, opt_state, trained)
        return optax.apply_updates(trained, updates), opt_state, loss, metrics

    return update


def fit(loss_fn: LossFn, trained: Any, batches: Iterator[dict], config: FitConfig,
        optimizer: optax.GradientTransformation,
        on_log: Callable[[dict], None] | None = None,
        placement: Placement | None = None, names: Any = None) -> tuple[Any, list[dict[str, float]]]:
    """`config.steps` updates of `trained` by the gradient of `loss_fn(trained, batch)`;
    returns the result and the metrics logged every `log_every` steps (and at the last).
    With a `placement`, `trained` is sharded by its logical `names` and each batch over the
    data-parallel axes, and the steps run with the mesh and rules active."""
    if placement is not None:
        trained, batches = placement.put(trained, names), placement.batches(batches)
    with placement.active() if placement is not None else contextlib.nullcontext():
        opt_state, update = optimizer.init(trained), update_step(loss_fn, optimizer)
        history, start = [], time.perf_counter()
        for step in range(1, config.steps + 1):
            trained, opt_state, loss, metrics = update(trained, opt_state, next(batches))
            if step % config.log_every == 0 or step == config.steps:
                record = {"step": step, "loss": float(loss), **{k: float(v) for k, v in metrics.items()},
                          "seconds": time.perf_counter() - start}
                history.append(record)
                if on_log is not None:
                    on_log(record)
    return trained, history
