"""Post-training on the one training engine (`lmjax.train.loop`): a method supplies its loss
and its batches, as an objective does, and the loop does the rest.

A `Method` is what SFT, the reward model, DPO and PPO differ in: the trained tree (from a
`Tuning`, or parameters plus a head), a loss `(trained, batch) -> (mean, weight, metrics)`,
a batch source with `get_state`/`set_state` (so a resumed run sees the same batches), and
optionally a held-out evaluation. `PosttrainSetup` gives the loop what a pretraining
`TrainSetup` gives it: the jitted step (`lmjax.train.step.make_update_step`: the optimizer
of `TrainConfig`, gradient accumulation, non-finite checks), the state, checkpoints, the run
directory's files. So a post-training run is a run directory like any other: config.yaml
(plus posttrain.yaml, the method's own settings), checkpoints/, metrics.jsonl, tensorboard/,
the writer lock, and it resumes from its latest checkpoint when started again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
import yaml
from jax.sharding import NamedSharding, PartitionSpec

from lmjax import parallel
from lmjax.config import CheckpointConfig, Config, MeshConfig, ModelConfig, TrainConfig
from lmjax.errors import CheckpointError, ConfigError
from lmjax.runs import config_file
from lmjax.runs.layout import PathLike, RunLayout
from lmjax.runs.version import check_version, write_version
from lmjax.scaling.flops import train_flops
from lmjax.scaling.params import ParamCounts, param_counts
from lmjax.train.callbacks import Callback, default_callbacks
from lmjax.train.checkpoint import Checkpointer, is_primary
from lmjax.train.loop import run_training
from lmjax.train.optimizer import learning_rate_schedule, make_optimizer
from lmjax.train.result import RunResult
from lmjax.train.setup import RunDirState, save_tokenizer
from lmjax.train.step import make_update_step

SETTINGS_FILE = "posttrain.yaml"
# (trained, batch) -> (mean loss, weight: how many units it is the mean over, metric means)
MethodLoss = Callable[[Any, dict], tuple[jax.Array, jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass
class Method:
    """What one post-training method gives the engine."""

    name: str  # "sft", "rm", "dpo", "ppo": logged as `<name>_loss`
    trained: Any  # the initial tree the optimizer updates
    loss: MethodLoss
    batches: Any  # an iterator with get_state()/set_state(); one global batch per step
    batch_shape: tuple[int, int]  # (rows, positions) of one forward pass, for FLOPs
    forward_passes: int = 1  # per batch (DPO and the reward model score two responses)
    transform: Callable[[optax.GradientTransformation], optax.GradientTransformation] = lambda opt: opt
    names: Any = None  # logical axes of `trained` for a placement; None: replicated
    evaluate: Callable[[Any], dict[str, float]] = lambda trained: {}


def summed_loss(loss: MethodLoss):
    """The method's mean loss as the engine's summed one, so microbatches add up exactly."""
    def summed(trained, batch):
        mean, weight, metrics = loss(trained, batch)
        weight = jnp.asarray(weight, jnp.float32)
        return mean * weight, (weight, {name: value * weight for name, value in metrics.items()})

    return summed


@dataclasses.dataclass
class PosttrainSetup:
    """The pieces `lmjax.train.loop.run_training` drives, for a post-training method."""

    config: Config
    method: Method
    layout: RunLayout
    run_dir: RunDirState
    mesh: Any
    rules: Any
    tokenizer: Any
    optimizer: Any
    train_step: Any
    counts: ParamCounts
    flops_per_batch: float
    input_tokens_per_batch: int
    settings: dict
    names: Any = None
    _fresh: Any = None

    @property
    def primary(self) -> bool:
        return is_primary()

    @property
    def loss_name(self) -> str:
        return f"{self.method.name}_loss"

    def batches(self, split: str):
        return self.method.batches

    def data_callbacks(self) -> list:
        return []

    def new_state(self) -> Any:
        """The method's initial tree placed on the mesh, and its optimizer state; built once."""
        if self._fresh is None:
            with parallel.activate(self.mesh, self.rules):
                trained = jax.device_put(self.method.trained, self._shardings())
                self._fresh = {"step": jnp.zeros((), jnp.int32), "params": trained,
                               "opt_state": jax.jit(self.optimizer.init)(trained)}
        return self._fresh

    def _shardings(self) -> Any:
        if self.names is None:
            replicated = NamedSharding(self.mesh, PartitionSpec())
            return jax.tree.map(lambda _: replicated, self.method.trained)
        specs = jax.tree.map(lambda axes: PartitionSpec(*axes), self.names,
                             is_leaf=lambda node: isinstance(node, tuple))
        return parallel.logical_shardings(specs, self.mesh, self.rules)

    def abstract_state(self) -> Any:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            self.new_state())

    def open_checkpointer(self) -> Checkpointer:
        return Checkpointer(self.layout.checkpoints, self.config.checkpoint.keep)

    def evaluate(self, trained: Any) -> dict[str, float]:
        return self.method.evaluate(trained)

    def write_run_files(self) -> None:
        """config.yaml, posttrain.yaml, lmjax_version and the tokenizer (when there is one)."""
        config_file.save_config(self.layout.root, self.config)
        (self.layout.root / SETTINGS_FILE).write_text(yaml.safe_dump(self.settings, sort_keys=True))
        write_version(self.layout)
        if self.tokenizer is not None:
            save_tokenizer(self.tokenizer, self.layout)


def run_config(model_config: ModelConfig, train: TrainConfig, run_dir: PathLike,
               base: Config | None = None, checkpoint: CheckpointConfig | None = None) -> Config:
    """The run's Config: `base`'s (the source run's) sections with this run's name, directory,
    model, optimizer (`train`) and checkpoints; a run from Python alone gets the defaults."""
    layout = RunLayout.at(run_dir)
    base = base or Config(name=layout.root.name)
    return dataclasses.replace(base, name=layout.root.name, run_dir=str(layout.root), model=model_config,
                               train=train, checkpoint=checkpoint or CheckpointConfig(every=train.steps))


def check_posttrain_dir(config: Config, settings: dict) -> RunDirState:
    """A new directory, or one holding this very run (same config and settings) to resume;
    anything else is refused in one line before training."""
    layout = RunLayout.at(config.run_dir)
    if not layout.root.exists() or (layout.root.is_dir() and not any(layout.root.iterdir())):
        return RunDirState(layout, resuming=False, restart=None)
    if not layout.config.exists() or not (layout.root / SETTINGS_FILE).exists():
        raise CheckpointError(f"{layout.root} already exists and holds no post-training run: "
                              "give a new --out directory")
    check_version(layout)
    config_file.check_compatible(layout.root, config)
    saved = yaml.safe_load((layout.root / SETTINGS_FILE).read_text()) or {}
    for key in sorted(set(saved) | set(settings)):
        if saved.get(key) != settings.get(key):
            raise CheckpointError(
                f"{layout.root} holds a post-training run with {key}={saved.get(key)!r} but this run "
                f"asks for {settings.get(key)!r}: give a new --out directory or the same settings")
    return RunDirState(layout, resuming=True, restart=None)


def build_posttrain_setup(method: Method, config: Config, settings: dict, *, tokenizer=None,
                          placement=None) -> PosttrainSetup:
    """Checks the run directory, then builds the optimizer (`config.train`, wrapped by the
    method's transform) and the jitted step; on `placement`'s mesh, else on one device."""
    if config.train.global_batch_size % config.train.grad_accum_steps:
        raise ConfigError(f"train.global_batch_size={config.train.global_batch_size} must split into "
                          f"train.grad_accum_steps={config.train.grad_accum_steps} equal microbatches")
    run_dir = check_posttrain_dir(config, settings)
    if placement is None:
        mesh = parallel.make_mesh(MeshConfig(), jax.devices()[:1])
        rules = parallel.axis_rules(MeshConfig())
    else:
        mesh, rules = placement.mesh, placement.rules
    optimizer = method.transform(make_optimizer(config.train))
    step = make_update_step(summed_loss(method.loss), optimizer, learning_rate_schedule(config.train),
                            config.train.grad_accum_steps, config.train.skip_nonfinite_batches > 0)
    rows, positions = method.batch_shape
    shapes = {"input_ids": (rows, positions)}
    return PosttrainSetup(
        config=config, method=method, layout=run_dir.layout, run_dir=run_dir, mesh=mesh, rules=rules,
        tokenizer=tokenizer, optimizer=optimizer, train_step=jax.jit(step), counts=param_counts(config.model),
        flops_per_batch=method.forward_passes * train_flops(config.model, shapes),
        input_tokens_per_batch=method.forward_passes * rows * positions, settings=settings,
        names=method.names if placement is not None else None,
    )


def run_method(method: Method, config: Config, settings: dict | None = None, *, tokenizer=None,
               placement=None, callbacks: list[Callback] | None = None) -> tuple[Any, RunResult]:
    """Trains `method` in `config.run_dir` (resuming its latest checkpoint), reporting to
    `callbacks` (default: metrics.jsonl, TensorBoard, loss plot, SIGTERM); returns the trained
    tree of its latest checkpoint (the loop saves at its last step), placed as it trained, and
    the run's result."""
    setup = build_posttrain_setup(method, config, settings or {"method": method.name},
                                  tokenizer=tokenizer, placement=placement)
    chosen = default_callbacks(setup.primary, progress=False) if callbacks is None else callbacks
    result = run_training(setup, list(chosen))
    return latest_trained(setup), result


def trained_at_latest_checkpoint(method: Method, config: Config,
                                 settings: dict | None = None) -> tuple[int, Any] | None:
    """(step, trained tree) of `config.run_dir`'s latest checkpoint, e.g. after a method's
    batch source ended the run early; None when it has none."""
    setup = build_posttrain_setup(method, config, settings or {"method": method.name})
    checkpointer = setup.open_checkpointer()
    try:
        step = checkpointer.latest_step()
    finally:
        checkpointer.close()
    return None if step is None else (step, latest_trained(setup))


def latest_trained(setup: PosttrainSetup) -> Any:
    """The trained tree of the run directory's latest checkpoint (the loop saves at its end)."""
    checkpointer = setup.open_checkpointer()
    try:
        with parallel.activate(setup.mesh, setup.rules):
            restored = checkpointer.restore_latest(setup.abstract_state())
    finally:
        checkpointer.close()
    return restored[1]["params"]
