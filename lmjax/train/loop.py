"""The training loop: everything `lmjax train` does, from a validated config to a finished run.

Order matters: every check that can fail on user input (mesh, batch divisibility, run-dir
compatibility, corpus, tokenizer) runs before the first compilation and before anything is
written to the run directory.
"""

from __future__ import annotations

import math
import signal
import time
from typing import Any

import jax
import numpy as np

from lmjax import data as data_lib
from lmjax import metrics as metrics_lib
from lmjax import parallel
from lmjax.config import Config, resolve_run_dir
from lmjax.errors import ConfigError, DataError, TrainingDiverged
from lmjax.models import build_model
from lmjax.objectives import objective_for
from lmjax.train import flops as flops_lib
from lmjax.runs import config_file as run_dir_lib
from lmjax.runs.params import load_params
from lmjax.train.checkpoint import Checkpointer, is_primary
from lmjax.train.optimizer import learning_rate_schedule, make_optimizer
from lmjax.train.reporting import RunReporter, plot_loss_curve, truncate_metrics
from lmjax.train.state import abstract_state, count_params, init_state, state_shardings
from lmjax.train.step import make_eval_step, make_train_step


class _StopSignal:
    """Turns SIGTERM (a TPU VM preemption notice) into a request to checkpoint and exit."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def agreed(self) -> bool:
        """Whether any host was asked to stop; all hosts must agree to save together."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.array(self.requested))
        return bool(np.any(flags))

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


def check_batch_layout(config: Config, mesh) -> None:
    batch = config.train.global_batch_size
    data_parallel = parallel.data_parallel_size(mesh)
    micro = batch // config.train.grad_accum_steps
    if micro % data_parallel:
        raise ConfigError(
            f"train.global_batch_size={batch} (microbatch {micro}) is not divisible by the "
            f"data-parallel size data*fsdp={data_parallel}: use a multiple of {data_parallel}"
        )
    if batch % jax.process_count():
        raise ConfigError(
            f"train.global_batch_size={batch} is not divisible by the {jax.process_count()} hosts"
        )


def example_inputs(objective, seq_len: int) -> dict[str, np.ndarray]:
    """Model inputs of batch size 1, enough to trace parameter shapes."""
    window = np.zeros(objective.window_length(seq_len), np.int32)
    example = objective.make_example(window, np.random.default_rng(0))
    return objective.model_inputs({k: v[None] for k, v in example.items()})


class Trainer:
    """Builds the sharded state and steps for a config; `run()` trains to `train.steps`."""

    def __init__(self, config: Config):
        self.config = config
        parallel.initialize_distributed(config.mesh)
        self.mesh = parallel.make_mesh(config.mesh)
        self.rules = parallel.axis_rules(config.mesh)
        check_batch_layout(config, self.mesh)
        self.run_dir = resolve_run_dir(config)
        run_dir_lib.check_compatible(self.run_dir, config)
        self.tokenizer = data_lib.build_tokenizer(config)
        self.objective = objective_for(config, self.tokenizer)
        self.model = build_model(config.model)
        self.schedule = learning_rate_schedule(config.train)
        self.optimizer = make_optimizer(config.train)
        self.example = example_inputs(self.objective, config.data.seq_len)
        self.shardings = state_shardings(self.model, self.optimizer, self.example, self.mesh,
                                         self.rules)
        self.checkpointer = Checkpointer(self.run_dir / "checkpoints", config.checkpoint.keep)
        self._jit_steps()

    def _jit_steps(self) -> None:
        batch_sharding = parallel.batch_sharding(self.mesh)
        replicated = parallel.replicated(self.mesh)
        train_step = make_train_step(self.model, self.objective, self.optimizer, self.schedule,
                                     self.config.train.grad_accum_steps)
        self.train_step = jax.jit(
            train_step, in_shardings=(self.shardings, batch_sharding),
            out_shardings=(self.shardings, replicated), donate_argnums=0,
        )
        self.eval_step = jax.jit(
            make_eval_step(self.model, self.objective),
            in_shardings=(self.shardings["params"], batch_sharding), out_shardings=replicated,
        )

    def batches(self, split: str):
        return data_lib.make_batches(
            self.config, self.tokenizer, self.objective, split,
            process_index=jax.process_index(), process_count=jax.process_count(),
        )

    def initial_state(self, train_iter) -> tuple[int, Any]:
        abstract = abstract_state(self.shardings, self.model, self.optimizer, self.example,
                                  self.mesh, self.rules)
        with parallel.activate(self.mesh, self.rules):
            restored = self.checkpointer.restore_latest(abstract)
        if restored is None:
            rng = jax.random.key(self.config.train.seed)
            state = init_state(self.model, self.optimizer, self.example, rng, self.shardings,
                               self.mesh, self.rules)
            if self.config.checkpoint.init_from:
                state["params"] = load_params(self.config.checkpoint.init_from,
                                              abstract["params"])
            return 0, state
        step, state, data_state = restored
        train_iter.set_state(data_state)
        return step, state

    def evaluate(self, params: Any) -> dict[str, float]:
        """Loss, perplexity, bits and accuracy on the first `eval_batches` validation batches."""
        totals: dict[str, float] = {}
        iterator = self.batches("validation")
        with parallel.activate(self.mesh, self.rules):
            for _, batch in zip(range(self.config.train.eval_batches), iterator):
                out = self.eval_step(params, parallel.global_batch(batch, self.mesh))
                for name, value in jax.device_get(out).items():
                    totals[name] = totals.get(name, 0.0) + float(value)
        if not totals or totals["tokens"] == 0:
            raise DataError("the validation split gave no tokens: use a larger corpus")
        tokens = totals["tokens"]
        loss = totals["loss_sum"] / tokens
        return {
            "eval_loss": loss,
            f"eval_{self.objective.loss_name}": loss,
            "eval_perplexity": metrics_lib.perplexity(totals["loss_sum"], tokens),
            "eval_bits_per_token": metrics_lib.entropy(totals["loss_sum"], tokens, base=2),
            "eval_accuracy": totals["accuracy"] / tokens,
            "eval_tokens": tokens,
        }

    def run(self) -> list[dict[str, Any]]:
        """Trains to `train.steps`, resuming from the run dir's latest checkpoint if any."""
        config = self.config
        train_iter = self.batches("train")
        start_step, state = self.initial_state(train_iter)
        primary = is_primary()
        if primary:
            run_dir_lib.save_config(self.run_dir, config)
            self.tokenizer.save(self.run_dir / "tokenizer")
            truncate_metrics(self.run_dir, start_step)
        n_params = count_params(state["params"])
        flops_per_token = flops_lib.flops_per_token(config.model, n_params, config.data.seq_len)
        peak = config.train.peak_flops or flops_lib.measure_matmul_peak(
            flops_lib.largest_matmul_size(config.model))
        system_peak = flops_lib.system_peak(peak)
        reporter = RunReporter(self.run_dir, config.train.steps, start_step, primary)
        reporter.message(
            f"{config.name}: {n_params:,} parameters, mesh {dict(self.mesh.shape)}, "
            f"{'resuming from step ' + str(start_step) if start_step else 'starting'} in {self.run_dir}"
        )
        stop = _StopSignal()
        records: list[dict[str, Any]] = []
        pending: list[tuple[int, dict]] = []
        last_good = start_step
        window_start = time.perf_counter()
        run_start = time.perf_counter()
        tokens_per_step = config.train.global_batch_size * config.data.seq_len
        step = start_step
        try:
            with parallel.activate(self.mesh, self.rules):
                while step < config.train.steps:
                    batch = parallel.global_batch(next(train_iter), self.mesh)
                    state, step_metrics = self.train_step(state, batch)
                    step += 1
                    pending.append((step, step_metrics))
                    at_end = step == config.train.steps
                    save_now = at_end or step % config.checkpoint.every == 0
                    stop_now = stop.agreed()
                    if step % config.train.log_every == 0 or save_now or stop_now:
                        fetched = _fetch_checked(pending)
                        elapsed = time.perf_counter() - window_start
                        throughput = len(fetched) * tokens_per_step / max(elapsed, 1e-9)
                        record = _summarise(fetched, step, step * tokens_per_step, throughput,
                                            throughput * flops_per_token / system_peak,
                                            time.perf_counter() - run_start)
                        record[self.objective.loss_name] = record["loss"]
                        if step % config.train.eval_every == 0 or at_end:
                            record.update(self.evaluate(state["params"]))
                        reporter.record(record)
                        reporter.advance(len(fetched))
                        records.append(record)
                        pending = []
                        window_start = time.perf_counter()
                    if save_now or stop_now:
                        self.checkpointer.save(step, state, train_iter.get_state())
                        last_good = step
                    if stop_now:
                        self.checkpointer.wait()
                        reporter.message(f"SIGTERM: saved a checkpoint at step {step}; exiting")
                        break
        except TrainingDiverged as err:
            self.checkpointer.wait()
            raise TrainingDiverged(f"{err}; the last good checkpoint is step {last_good}") from None
        finally:
            stop.restore()
            reporter.close()
            self.checkpointer.close()
        if primary and records:
            plot_loss_curve(self.run_dir, f"{config.name} ({n_params:,} parameters)")
        return records


def _fetch_checked(pending: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """Brings step metrics to the host and stops at the first non-finite loss."""
    fetched = [(step, jax.device_get(m)) for step, m in pending]
    for step, m in fetched:
        loss = float(m["loss"])
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss} at step {step}: lower train.lr or raise train.warmup_steps"
            )
    return fetched


def _summarise(fetched, step, tokens_seen, throughput, mfu, wall_time) -> dict[str, Any]:
    """One log record: the last step's learning rate, means of the window's other metrics."""
    last = fetched[-1][1]
    record: dict[str, Any] = {"step": step}
    for name in last:
        if name in ("tokens", "learning_rate"):
            continue
        record[name] = float(np.mean([float(m[name]) for _, m in fetched]))
    record.update(
        learning_rate=float(last["learning_rate"]),
        tokens_seen=int(tokens_seen),
        tokens_per_sec=throughput,
        mfu=mfu,
        wall_time=wall_time,
    )
    return record


def train(config: Config) -> list[dict[str, Any]]:
    return Trainer(config).run()

