"""What the training loop reports to: logging, the progress bar, the loss plot, stop requests.

The loop (`lmjax.train.loop`) only runs steps; everything it tells the outside world goes
through callbacks, so a sweep can call `train()` from any thread with its own set. A callback
overrides what it needs of:

    on_start(run)          once, before the first step: a `RunInfo`
    on_message(text)       a human-readable line (start-up summary, preemption)
    on_eval(step, record)  after an evaluation: eval_loss, eval_bits_per_byte, ...
    on_log(step, record)   every train.log_every steps, at saves and at the end
    stop_requested()       polled every step; True asks the loop to save and stop
    on_end(result)         once, after the last step, with the `RunResult`
    on_close()             always, also after an error: release files, handlers

`default_callbacks` gives what `lmjax train` uses. Writers of the run directory are only
created on process 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from etils import epath

from lmjax.config import Config
from lmjax.runs.layout import RunLayout
from lmjax.train import reporting
from lmjax.train.result import RunResult


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a callback may want to know when the run starts."""

    config: Config
    layout: RunLayout
    start_step: int
    total_steps: int
    parameters: int
    primary: bool


class Callback:
    """No-op base: subclasses override the hooks they need."""

    def on_start(self, run: RunInfo) -> None:
        pass

    def on_message(self, text: str) -> None:
        pass

    def on_eval(self, step: int, record: dict[str, Any]) -> None:
        pass

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        pass

    def stop_requested(self) -> bool:
        return False

    def on_end(self, result: RunResult) -> None:
        pass

    def on_close(self) -> None:
        pass


class MetricsFile(Callback):
    """metrics.jsonl: drops rows after the resumed step, then appends one row per log."""

    def __init__(self):
        self.layout: RunLayout | None = None

    def on_start(self, run: RunInfo) -> None:
        self.layout = run.layout
        with reporting.writing(run.layout.metrics):
            reporting.truncate_metrics(run.layout.root, run.start_step)

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        reporting.append_record(self.layout.root, record)


class TensorBoard(Callback):
    """The logged scalars as a TensorBoard event file, written and flushed at each log.

    tensorboardX's `SummaryWriter` writes from a thread through a bounded queue: when a write
    fails (a full disk) the thread dies and the next log blocks forever in the queue, holding
    the run's lock and ignoring SIGTERM. Its `EventsWriter` is used here directly, so a failed
    write raises in the loop (one line, `reporting.writing`). tensorboardX writes local files
    only, so a run directory on a bucket gets no tensorboard/."""

    def __init__(self):
        self.writer = None
        self.directory: epath.Path | None = None

    def on_start(self, run: RunInfo) -> None:
        if "://" in str(run.layout.root):
            return
        from tensorboardX.event_file_writer import EventsWriter

        self.directory = run.layout.tensorboard
        with reporting.writing(self.directory):
            self.directory.mkdir(parents=True, exist_ok=True)
            self.writer = EventsWriter(str(self.directory / "events"))

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        with reporting.writing(self.directory):
            for name, value in record.items():
                if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.write_event(Event(wall_time=time.time(), step=step,
                                                  summary=scalar(name, value)))
            self.writer.flush()

    def on_close(self) -> None:
        """Every log was flushed when written (and a failure raised there), so an error while
        closing after a failed write is not a second one to report."""
        if self.writer is not None:
            with contextlib.suppress(OSError):
                self.writer.close()
            self.writer = None


class Heartbeat(Callback):
    """heartbeats/process-<i>.json: this process's last sign of progress (step, wall time,
    host, pid), rewritten at the start and at every log. Every process writes its own, so
    `lmjax tpu babysit` sees a slice whose workers stopped progressing (one died, the others
    wait for it in a collective) and restarts them all."""

    def __init__(self):
        self.path: epath.Path | None = None

    def on_start(self, run: RunInfo) -> None:
        import jax

        self.path = run.layout.heartbeat(jax.process_index())
        with reporting.writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.beat(run.start_step)

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        self.beat(step)

    def beat(self, step: int) -> None:
        record = {"step": step, "time": time.time(), "host": socket.gethostname(),
                  "pid": os.getpid()}
        with reporting.writing(self.path):
            self.path.write_text(json.dumps(record) + "\n")


class ProgressBar(Callback):
    """A tqdm bar with loss, eval loss and tokens/s; messages are printed above it (stderr)."""

    def __init__(self):
        self.bar = None
        self.position = 0

    def on_start(self, run: RunInfo) -> None:
        import tqdm

        self.position = run.start_step
        self.bar = tqdm.tqdm(total=run.total_steps, initial=run.start_step, unit="step",
                             dynamic_ncols=True, desc="train", file=sys.stderr)

    def on_message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def on_log(self, step: int, record: dict[str, Any]) -> None:
        shown = {k: record[k] for k in ("loss", "eval_loss", "tokens_per_sec") if k in record}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
        self.bar.update(step - self.position)
        self.position = step

    def on_close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class LossPlot(Callback):
    """loss_curve.png from metrics.jsonl when the run ends."""

    def __init__(self):
        self.run: RunInfo | None = None

    def on_start(self, run: RunInfo) -> None:
        self.run = run

    def on_end(self, result: RunResult) -> None:
        if result.records:
            title = f"{self.run.config.name} ({self.run.parameters:,} parameters)"
            reporting.plot_loss_curve(self.run.layout.root, title)


class StopRequest(Callback):
    """Stops the run (with a checkpoint) when `request()` is called, from any thread."""

    def __init__(self, event: threading.Event | None = None):
        self.event = event or threading.Event()

    def request(self) -> None:
        self.event.set()

    def stop_requested(self) -> bool:
        return self.event.is_set()


class Preemption(StopRequest):
    """SIGTERM (a TPU VM preemption notice) becomes a stop request. Python delivers signals
    to the main thread only, so off the main thread this installs nothing: call `request()`
    (or use a `StopRequest`) from the thread that receives the notice instead."""

    def __init__(self, event: threading.Event | None = None):
        super().__init__(event)
        self._previous = None

    def on_start(self, run: RunInfo) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda signum, frame: self.request())

    def on_close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def default_callbacks(primary: bool = True, progress: bool = True) -> list[Callback]:
    """What `lmjax train` reports to: the run directory's files (process 0 only), the console
    bar, every process's heartbeat and the SIGTERM handler."""
    callbacks: list[Callback] = [MetricsFile(), TensorBoard(), LossPlot()] if primary else []
    if progress and primary:
        callbacks.append(ProgressBar())
    callbacks += [Heartbeat(), Preemption()]
    return callbacks
