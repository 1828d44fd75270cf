"""The training loop: steps, non-finite checks, evaluation, checkpoints; reports via callbacks.

`train(config)` is what `lmjax train` and a sweep call. Set-up (checks, mesh, model, jitted
steps, data) is `lmjax.train.setup`; this module runs a built `TrainSetup` and tells its
callbacks (`lmjax.train.callbacks`) what happened. It assumes no main thread.

Step metrics stay on the device until the loop logs, saves or stops; then all pending steps
are fetched at once and checked for non-finite values. Since a save always fetches first,
no checkpoint of a non-finite step, or of any step after one, is ever written.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import socket
import time
from typing import Any, Iterable

import jax
import numpy as np

from lmjax import parallel
from lmjax import xla_cpu
from lmjax.config import Config
from lmjax.errors import TrainingDiverged
from lmjax.runs.lock import RunLock
from lmjax.train import flops as flops_lib
from lmjax.train import reporting
from lmjax.train.callbacks import Callback, RunInfo, default_callbacks
from lmjax.train.result import RunResult
from lmjax.train.setup import TrainSetup, build_setup, checkpoint_steps

# Key of the run's running totals inside the checkpoint's data-iterator JSON.
PROGRESS_KEY = "lmjax_progress"
QUANTITIES = (("loss", "loss"), ("grad_norm", "gradient norm"),
              ("param_norm", "updated parameters' norm"))


def train(config: Config, callbacks: Iterable[Callback] = (), *, restart_from: int | None = None,
          defaults: bool = True) -> RunResult:
    """Trains `config` to `train.steps`, resuming its run directory's latest checkpoint.

    `callbacks` are added to `default_callbacks()` (metrics.jsonl, TensorBoard, loss plot,
    progress bar, SIGTERM handler) unless `defaults=False`. Evaluation on `train.eval_tasks`
    is a callback its caller passes (`lmjax.eval.callback.callbacks_for(config)`): the loop
    sits below `lmjax.eval` and never imports it. `restart_from=STEP` continues from
    checkpoint STEP with changed optimizer settings (`lmjax train --restart-from`).
    """
    xla_cpu.warn_if_not_applied()
    setup = build_setup(config, restart_from=restart_from)
    chosen = [*default_callbacks(setup.primary), *callbacks] if defaults else list(callbacks)
    return run_training(setup, chosen)


def run_training(setup: TrainSetup, callbacks: list[Callback]) -> RunResult:
    """Runs a built set-up under the run directory's writer lock; callbacks always closed."""
    callbacks = [*setup.data_callbacks(), *callbacks]  # first: they add to the records others write
    try:
        with writer_lock(setup):
            return _Loop(setup, callbacks).run()
    finally:
        for callback in callbacks:
            callback.on_close()


def writer_lock(setup: TrainSetup) -> contextlib.AbstractContextManager:
    """One writer per run directory (`lmjax.runs.lock`), taken by process 0 for the whole run
    before anything is written there."""
    return RunLock(setup.layout) if setup.primary else contextlib.nullcontext()


class _Loop:
    def __init__(self, setup: TrainSetup, callbacks: list[Callback]):
        self.setup = setup
        self.config = setup.config
        self.callbacks = callbacks
        self.progress = {"tokens_seen": 0, "input_tokens_seen": 0, "skipped_batches": 0}

    def emit(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def run(self) -> RunResult:
        setup = self.setup
        if setup.primary and setup.run_dir.restart:
            apply_restart(setup)
        checkpointer = setup.open_checkpointer()
        try:
            return self._train(checkpointer)
        finally:
            checkpointer.close()

    def _train(self, checkpointer) -> RunResult:
        setup, config = self.setup, self.config
        train_iter = setup.batches("train")
        start_step, state = self._initial_state(checkpointer, train_iter)
        if setup.primary:
            with reporting.writing(setup.layout.root):
                setup.write_run_files()
        system_peak = flops_lib.system_peak(config.train.peak_flops or flops_lib.measure_matmul_peak(
            flops_lib.largest_matmul_size(config.model)))
        self.emit("on_start", RunInfo(config, setup.layout, start_step, config.train.steps,
                                      setup.counts.total, setup.primary))
        where = f"resuming from step {start_step}" if start_step else "starting"
        self.emit("on_message", f"{config.name}: {setup.counts.total:,} parameters, mesh "
                                f"{dict(setup.mesh.shape)}, {where} in {setup.layout.root}")
        records: list[dict[str, Any]] = []
        pending: list[tuple[int, Any]] = []
        run_start = window_start = time.perf_counter()
        step, preempted, evaluated = start_step, False, {}
        try:
            with parallel.activate(setup.mesh, setup.rules):
                while step < config.train.steps:
                    batch = parallel.global_batch(next_batch(train_iter, state), setup.mesh)
                    state, step_metrics = setup.train_step(state, batch)
                    step += 1
                    pending.append((step, step_metrics))
                    at_end = step == config.train.steps
                    save_now = (at_end or step % config.checkpoint.every == 0
                                or step in config.checkpoint.keep_steps)
                    stop_now = self._stop_agreed()
                    eval_now = step % config.train.eval_every == 0 or at_end
                    if step % config.train.log_every == 0 or eval_now or save_now or stop_now:
                        fetched = self._account(jax.device_get(pending))
                        elapsed = max(time.perf_counter() - window_start, 1e-9)
                        record = self._record(fetched, step, elapsed, system_peak,
                                              time.perf_counter() - run_start)
                        if eval_now:
                            evaluated = setup.evaluate(state["params"])
                            for callback in self.callbacks:  # train.eval_tasks (lmjax.eval.callback)
                                if hasattr(callback, "evaluate_params"):
                                    evaluated.update(callback.evaluate_params(step, state["params"]))
                            self.emit("on_eval", step, evaluated)
                            record.update(evaluated)
                        self.emit("on_log", step, record)
                        records.append(record)
                        pending = []
                        window_start = time.perf_counter()
                    if save_now or stop_now:
                        checkpointer.save(step, state, {**train_iter.get_state(),
                                                        PROGRESS_KEY: dict(self.progress)})
                    if stop_now:
                        checkpointer.wait()
                        self.emit("on_message", f"stop requested: saved a checkpoint at step {step}; exiting")
                        preempted = True
                        break
        except TrainingDiverged as err:
            checkpointer.wait()
            raise TrainingDiverged(f"{err}; {how_to_continue(checkpointer.latest_step())}") from None
        result = self._result(start_step, step, records, evaluated, preempted,
                              time.perf_counter() - run_start)
        self.emit("on_end", result)
        return result

    def _initial_state(self, checkpointer, train_iter) -> tuple[int, Any]:
        setup, restart = self.setup, self.setup.run_dir.restart
        with parallel.activate(setup.mesh, setup.rules):
            if restart:
                restored = (restart.step, *checkpointer.restore(restart.step, setup.abstract_state()))
            else:
                restored = checkpointer.restore_latest(setup.abstract_state())
        if restored is None:
            return 0, setup.new_state()
        step, state, data_state = restored
        self.progress.update(data_state.pop(PROGRESS_KEY, {}))
        train_iter.set_state(data_state)
        return step, state

    def _stop_agreed(self) -> bool:
        """Whether a callback on any host asked to stop; all hosts must save together."""
        requested = any(callback.stop_requested() for callback in self.callbacks)
        if jax.process_count() == 1:
            return requested
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.array(requested))))

    def _account(self, fetched: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
        """Counts tokens and skipped batches; raises at a non-finite step beyond the limit."""
        limit = self.config.train.skip_nonfinite_batches
        for step, m in fetched:
            if bool(m["finite"]):
                self.progress["tokens_seen"] += int(m["tokens"])
                self.progress["input_tokens_seen"] += self.setup.input_tokens_per_batch
                continue
            problem = describe_nonfinite(step, m)
            if limit == 0:
                raise TrainingDiverged(problem)
            self.progress["skipped_batches"] += 1
            if self.progress["skipped_batches"] > limit:
                raise TrainingDiverged(
                    f"more than train.skip_nonfinite_batches={limit} batches were skipped as "
                    f"non-finite, the last because {problem}"
                )
        return fetched

    def _record(self, fetched, step: int, elapsed: float, system_peak: float,
                wall_time: float) -> dict[str, Any]:
        """One log record: the last step's learning rate, means of the window's other metrics."""
        last = fetched[-1][1]
        record: dict[str, Any] = {"step": step}
        for name in last:
            if name not in ("tokens", "learning_rate", "finite"):
                record[name] = float(np.mean([float(m[name]) for _, m in fetched]))
        record[self.setup.loss_name] = record["loss"]
        window_tokens = sum(float(m["tokens"]) for _, m in fetched)
        record.update(
            learning_rate=float(last["learning_rate"]),
            **self.progress,
            tokens_per_sec=window_tokens / elapsed,
            mfu=len(fetched) * self.setup.flops_per_batch / elapsed / system_peak,
            wall_time=wall_time,
        )
        return record

    def _result(self, start_step, step, records, evaluated, preempted, wall_time) -> RunResult:
        counts = self.setup.counts
        return RunResult(
            run_dir=str(self.setup.layout.root), steps=step, start_step=start_step,
            train_loss=records[-1]["loss"] if records else None,
            eval_loss=evaluated.get("eval_loss"),
            eval_bits_per_byte=evaluated.get("eval_bits_per_byte"),
            parameters=counts.total, embedding_parameters=counts.embedding,
            non_embedding_parameters=counts.non_embedding,
            tokens_seen=self.progress["tokens_seen"],
            input_tokens_seen=self.progress["input_tokens_seen"],
            train_flops=step * self.setup.flops_per_batch, wall_time=wall_time,
            preempted=preempted, skipped_batches=self.progress["skipped_batches"], records=records,
        )


def next_batch(train_iter, state: Any) -> dict:
    """The next batch; a source whose batches depend on the parameters (PPO's rollouts) is
    first shown the current ones (`observe`), so it never reaches into the loop."""
    if hasattr(train_iter, "observe"):
        train_iter.observe(state["params"])
    return next(train_iter)


def describe_nonfinite(step: int, metrics: dict) -> str:
    """'the gradient norm became nan at step 4 (loss 9.7e+17)': the first bad quantity."""
    values = {name: float(metrics[name]) for name, _ in QUANTITIES}
    bad, label = next((name, text) for name, text in QUANTITIES if not math.isfinite(values[name]))
    others = ", ".join(f"{text} {values[name]:.3g}" for name, text in QUANTITIES if name != bad)
    return f"the {label} became {values[bad]} at step {step} ({others})"


def how_to_continue(latest: int | None) -> str:
    """The latest checkpoint (all were checked finite) and the command that continues from it."""
    if latest is None:
        return ("no checkpoint was written before it: start again in a new run_dir with a lower "
                "train.lr or more train.warmup_steps")
    return (f"the latest checkpoint is step {latest}: continue from it with changed optimizer "
            f"settings, e.g. `lmjax train <same arguments> --restart-from {latest} train.lr=<lower>` "
            "(or raise train.warmup_steps, or set train.skip_nonfinite_batches)")


def apply_restart(setup: TrainSetup) -> None:
    """Sets checkpoints after the restart step aside (moved, never deleted) and records the
    change in restarts.jsonl; config.yaml is rewritten with the new settings by the start."""
    restart, layout = setup.run_dir.restart, setup.layout
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    later = [step for step in checkpoint_steps(layout) if step > restart.step]
    if later:
        aside = layout.superseded / f"restart-{restart.step}-{now.replace(':', '')}"
        aside.mkdir(parents=True, exist_ok=True)
        for step in later:
            (layout.checkpoints / str(step)).rename(aside / str(step))
    line = {"step": restart.step, "time": now, "host": socket.gethostname(),
            "changes": {k: {"old": old, "new": new} for k, (old, new) in restart.changes.items()},
            "checkpoints_set_aside": later}
    previous = layout.restarts.read_text() if layout.restarts.exists() else ""
    layout.restarts.write_text(previous + json.dumps(line) + "\n")
