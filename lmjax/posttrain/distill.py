"""Knowledge distillation (Hinton et al. 2015) of a decoder into a smaller one.

The student learns the teacher's whole next-token distribution, softened by a temperature T:
loss = T² · KL(softmax(teacher/T) ‖ softmax(student/T)) per token (T² keeps the gradient's
scale independent of T), optionally mixed with the usual cross-entropy on the data's tokens
(`hard_weight`). The comparison that shows it pays is the same student trained on hard labels
alone, on the same token rows in the same order for the same steps. Both are a `Method` on the
training engine (`lmjax.posttrain.engine`), so each is a resumable run directory: the frozen
teacher runs inside the loss (its parameters captured, never differentiated), so its B×T×V
logits exist for one microbatch at a time instead of for every row at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.config import ModelConfig, TrainConfig
from lmjax.errors import ConfigError, DataError
from lmjax.objectives.base import Batch
from lmjax.objectives.causal_lm import CausalLM, token_cross_entropy
from lmjax.posttrain.engine import Method, run_config, run_method
from lmjax.posttrain.packing import epoch_batches
from lmjax.runs.layout import PathLike
from lmjax.train.reporting import read_metrics

# inputs B×T -> teacher logits B×T×V, traced inside the student's loss
Teacher = Callable[[jax.Array], jax.Array]


def distillation_loss(student_logits: jax.Array, teacher_logits: jax.Array,
                      temperature: float) -> jax.Array:
    """Per-position T² · KL(teacher_T ‖ student_T) over the last (vocabulary) axis, in float32."""
    t = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
    s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    return temperature ** 2 * jnp.sum(jnp.exp(t) * (t - s), axis=-1)


@dataclasses.dataclass(frozen=True)
class Distillation(CausalLM):
    """Next-token windows as in CausalLM, scored against `batch["teacher_logits"]` (B×T×V):
    (1 − hard_weight) · distillation loss + hard_weight · cross-entropy on the targets."""

    temperature: float = 1.0  # the docs' and `lmjax compress distill`'s default
    hard_weight: float = 0.0
    name: str = "distillation"
    loss_name: str = "distill_loss"

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"distillation temperature {self.temperature} must be > 0 (1 is the plain softmax)")
        if not 0 <= self.hard_weight <= 1:
            raise ConfigError(f"hard_weight {self.hard_weight} must lie in [0, 1]: the share of "
                              "cross-entropy on the data's tokens in the loss")

    def loss(self, logits_BTV: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array, dict]:
        weights_BT = batch["weights"]
        soft_BT = distillation_loss(logits_BTV, batch["teacher_logits"], self.temperature)
        hard_BT = token_cross_entropy(logits_BTV, batch["targets"])
        loss_BT = (1 - self.hard_weight) * soft_BT + self.hard_weight * hard_BT
        extra = {"soft_loss": (soft_BT * weights_BT).sum(), "hard_loss": (hard_BT * weights_BT).sum()}
        return (loss_BT * weights_BT).sum(), weights_BT.sum(), extra


def student_config(teacher: ModelConfig, d_model: int = 32, n_layers: int = 2,
                   n_heads: int = 4, d_ff: int | None = None) -> ModelConfig:
    """The teacher's architecture (vocabulary, context, norms, positions) at a smaller size."""
    if d_model % n_heads:
        raise ConfigError(f"student d_model {d_model} is not a multiple of its n_heads {n_heads}")
    return dataclasses.replace(teacher, preset="", d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                               n_kv_heads=None, head_dim=None, d_ff=d_ff or 4 * d_model)


def teacher_logits_fn(teacher: nn.Module, teacher_params: Any) -> Teacher:
    """The frozen teacher's logits for a batch of inputs: no gradient reaches its parameters."""
    frozen = jax.tree.map(jnp.asarray, teacher_params)
    return lambda inputs_BT: jax.lax.stop_gradient(teacher.apply({"params": frozen}, inputs_BT))


def token_rows(rows: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Next-token examples (inputs, targets, weights) from token rows of T+1 tokens each."""
    rows = np.asarray(rows, np.int32)
    if rows.ndim != 2 or len(rows) < batch_size:
        raise DataError(f"distillation needs at least batch_size={batch_size} token rows, got shape {rows.shape}")
    return {"inputs": rows[:, :-1], "targets": rows[:, 1:], "weights": np.ones(rows[:, 1:].shape, np.float32)}


def init_params(model: nn.Module, seed: int = 0) -> Any:
    """The model's initial parameters (its own initialisers), unboxed."""
    ids = jnp.zeros((1, 1), jnp.int32)
    return nn.meta.unbox(jax.jit(model.init)(jax.random.key(seed), ids)["params"])


def student_method(student: nn.Module, params: Any, rows: np.ndarray, train: TrainConfig,
                   objective: CausalLM = CausalLM(), teacher: Teacher | None = None) -> Method:
    """The student from `params` on `rows` for the engine: with a `Distillation` objective
    against `teacher`'s logits ("distill"), with CausalLM on the hard labels alone ("lm");
    batches are seeded epochs of the rows (the same for both), weight the target tokens."""
    if isinstance(objective, Distillation) == (teacher is None):
        raise ConfigError("a Distillation objective needs a teacher, and only it: pass both or neither")
    examples = token_rows(rows, train.global_batch_size)

    def loss(trained, batch):
        if teacher is not None:
            batch = {**batch, "teacher_logits": teacher(batch["inputs"])}
        outputs = student.apply({"params": trained}, **objective.model_inputs(batch), **objective.model_options)
        total, weight, sums = objective.loss(outputs, batch)
        tokens = jnp.maximum(weight, 1.0)  # the engine weighs the means back into sums
        return total / tokens, weight, {name: value / tokens for name, value in sums.items()}

    return Method(name=objective.loss_name.removesuffix("_loss"), trained=params, loss=loss,
                  batches=epoch_batches(examples, train.global_batch_size, train.seed),
                  batch_shape=examples["inputs"][:train.global_batch_size].shape)


def train_student(student: nn.Module, params: Any, rows: np.ndarray, train: TrainConfig,
                  run_dir: PathLike, objective: CausalLM = CausalLM(),
                  teacher: Teacher | None = None) -> tuple[Any, list[dict]]:
    """The student's parameters after `train.steps` steps from `params` on `rows`, trained as
    a run in `run_dir` (resumed when it holds this run), and the run's records (metrics.jsonl:
    those of earlier sessions too)."""
    method = student_method(student, params, rows, train, objective, teacher)
    trained, _ = run_method(method, run_config(student.config, train, run_dir))
    return trained, read_metrics(run_dir)


def check_student(teacher: ModelConfig, student: ModelConfig) -> None:
    """One-line ConfigError unless the student's vocabulary is the teacher's."""
    if student.vocab_size != teacher.vocab_size:
        raise ConfigError(f"the student's vocabulary ({student.vocab_size}) differs from the teacher's "
                          f"({teacher.vocab_size}): distillation matches distributions token by token")
