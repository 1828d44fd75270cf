"""The run directory's record of training: metrics.jsonl, its truncation on resume, the loss plot.

Every path comes from `RunLayout` as an `etils.epath.Path`, so the files land on a bucket
(`gs://...`) as well as on local disk. metrics.jsonl is strict JSON: a non-finite value (a
NaN loss, an infinite gradient norm) is written as `null`. A write that fails (a full disk)
stops the run with one line naming the file (`writing`).
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import shutil
import warnings
from typing import Any, Iterator

from etils import epath

from lmjax.errors import CheckpointError, LmjaxWarning
from lmjax.runs.layout import PathLike, RunLayout
from lmjax.runs.metrics_file import parse_metrics


@contextlib.contextmanager
def writing(path: PathLike) -> Iterator[None]:
    """Turns a failed write of a run-directory file into a one-line `CheckpointError` naming it,
    so a full disk stops the run (the lock released, exit 2) instead of printing a traceback."""
    try:
        yield
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        if err.errno == errno.ENOSPC and "://" not in os.fspath(path):
            with contextlib.suppress(OSError):
                free = shutil.disk_usage(os.path.dirname(os.fspath(path))).free
                reason += f" ({free / 1e6:.1f} MB free there)"
        raise CheckpointError(
            f"writing {path} failed: {reason}; the run stopped: fix this and run the same "
            "command again to resume from the latest checkpoint"
        ) from None


def json_safe(record: dict[str, Any]) -> dict[str, Any]:
    """The record with NaN and infinities replaced by None, so json.dumps writes `null`."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


def append_record(run_dir: PathLike, record: dict[str, Any]) -> None:
    """Appends one line to metrics.jsonl. Object stores cannot append (gcsfs's "a" silently
    overwrites), so on a bucket the file is read, extended and rewritten."""
    path = RunLayout.at(run_dir).metrics
    line = json.dumps(json_safe(record), allow_nan=False) + "\n"
    with writing(path):
        if "://" in os.fspath(path):
            path.write_text((path.read_text() if path.exists() else "") + line)
            return
        with path.open("a") as out:
            out.write(line)


def read_metrics(run_dir: PathLike) -> list[dict[str, Any]]:
    """metrics.jsonl's records, without a torn last line (`lmjax.runs.metrics_file`)."""
    return parse_metrics(RunLayout.at(run_dir).metrics, need_step=True)[0]


def truncate_metrics(run_dir: PathLike, last_step: int) -> None:
    """Drops records after the step a resumed run restarts from, so none is logged twice, and
    a torn last line (with a one-line warning)."""
    path = RunLayout.at(run_dir).metrics
    if not path.exists():
        return
    records, torn = parse_metrics(path, need_step=True)
    if torn:
        warnings.warn(f"dropped the torn last line {torn} of {path} (a write cut short by a full "
                      "disk or a crash); the records before it are kept", LmjaxWarning, stacklevel=2)
    kept = [r for r in records if r["step"] <= last_step]
    path.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))


def per_source_curves(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """(step, eval_loss/<source>) points per source of a run on `data.sources`."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in record.items():
            if key.startswith("eval_loss/") and value is not None:
                curves.setdefault(key.removeprefix("eval_loss/"), []).append((record["step"], value))
    return curves


def plot_loss_curve(run_dir: PathLike, title: str) -> epath.Path:
    """Draws train and validation loss against step into loss_curve.png (written as bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = RunLayout.at(run_dir)
    records = read_metrics(run_dir)
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    evals = [(r["step"], r["eval_loss"]) for r in records if r.get("eval_loss") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss", lw=1.5)
    for name, curve in per_source_curves(records).items():  # data.sources: one per language
        ax.plot(*zip(*curve), "s--", label=f"validation loss, {name}", lw=1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=120)
    plt.close(fig)
    with writing(layout.loss_curve):
        layout.loss_curve.write_bytes(image.getvalue())
    return layout.loss_curve
