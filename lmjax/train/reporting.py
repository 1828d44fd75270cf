"""Where training progress goes: a progress bar, metrics.jsonl, TensorBoard and a loss plot."""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import tqdm

METRICS_FILE = "metrics.jsonl"


class RunReporter:
    """Writes each record to the console bar, metrics.jsonl and TensorBoard (primary host only)."""

    def __init__(self, run_dir: pathlib.Path, total_steps: int, start_step: int, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / METRICS_FILE
        self.bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                             disable=not enabled, desc="train")
        self.writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def record(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")
        step = record["step"]
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(name, value, step)
        shown = {k: record[k] for k in ("loss", "eval_loss", "tokens_per_sec") if k in record}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    def advance(self, steps: int) -> None:
        self.bar.update(steps)

    def message(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: pathlib.Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(run_dir: pathlib.Path, last_step: int) -> None:
    """Drops records after the step a resumed run restarts from, so none is logged twice."""
    path = run_dir / METRICS_FILE
    if path.exists():
        kept = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def plot_loss_curve(run_dir: pathlib.Path, title: str) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    out = run_dir / "loss_curve.png"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
