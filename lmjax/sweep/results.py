"""A sweep's tables: `results.jsonl` (one row per point), `summary.md` and `summary.csv`.

Rows are rebuilt from the points' own files (`point.json`, `status.json`) every time, so any
worker on any host may regenerate them after a point and the tables always show the disk.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from lmjax.runs.layout import as_path
from lmjax.sweep import status as status_lib

COLUMNS = (
    ("name", "name"), ("hash", "hash"), ("status", "status"),
    ("N", "parameters"), ("N_nonemb", "non_embedding_parameters"), ("D", "tokens"),
    ("C", "train_flops"), ("train_loss", "train_loss"), ("eval_loss", "eval_loss"),
    ("eval_bpb", "eval_bits_per_byte"), ("tokens/s", "tokens_per_sec"), ("MFU", "mfu"),
    ("wall_s", "wall_time"), ("error", "error"),
)
FILES = ("results.jsonl", "summary.md", "summary.csv")
HARNESS_PREFIX = "harness/"


def columns_for(rows: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    """COLUMNS with one more before `error` for each evaluation metric any row has
    (`lambada/acc` for `harness/lambada/acc`, from `train.eval_tasks`)."""
    metrics = sorted({key for row in rows for key in (row.get("eval_metrics") or {})})
    extra = tuple((key.removeprefix(HARNESS_PREFIX), key) for key in metrics)
    return COLUMNS[:-1] + extra + COLUMNS[-1:]


def point_row(point_dir: str | os.PathLike) -> dict[str, Any]:
    """One row: what the point is, its plan (N, D, C), and its outcome where it has one."""
    directory = as_path(point_dir)
    point = status_lib.read_json(directory / status_lib.POINT_FILE) or {}
    status = status_lib.read_status(directory)
    result = status.get("result") or {}
    plan = point.get("plan") or {}
    row = {
        "name": point.get("name"), "hash": point.get("hash"), "dir": directory.name,
        "values": point.get("values"), "overrides": point.get("overrides"),
        "variables": point.get("variables"), "eval_tasks": point.get("eval_tasks"),
        "status": status_lib.shown_state(directory, status), "attempts": status.get("attempts", 0),
        "parameters": result.get("parameters", plan.get("parameters")),
        "embedding_parameters": result.get("embedding_parameters", plan.get("embedding_parameters")),
        "non_embedding_parameters": result.get("non_embedding_parameters",
                                               plan.get("non_embedding_parameters")),
        "tokens": result.get("tokens_seen", plan.get("tokens")),
        "input_tokens": result.get("input_tokens_seen", plan.get("input_tokens")),
        "train_flops": result.get("train_flops", plan.get("train_flops")),
        "error": status.get("error"),
        "eval_metrics": result.get("eval_metrics"),
        "branch": point.get("branch"),  # a cooldown branch's parent and step (lmjax.sweep.branches)
    }
    for key in ("train_loss", "eval_loss", "eval_bits_per_byte", "tokens_per_sec", "mfu",
                "wall_time", "steps"):
        row[key] = result.get(key)
    return {**row, **(row["eval_metrics"] or {})}


def write_results(sweep_dir: str | os.PathLike, rows: list[dict[str, Any]],
                  unlisted: list[dict[str, Any]] = ()) -> None:
    """results.jsonl (the sweep's rows, then the `unlisted` ones of points the sweep file no
    longer names), summary.md and summary.csv (the sweep's rows) under the sweep directory,
    each replaced whole."""
    root = as_path(sweep_dir)
    root.mkdir(parents=True, exist_ok=True)
    texts = {
        "results.jsonl": "".join(json.dumps(row, sort_keys=True) + "\n" for row in [*rows, *unlisted]),
        "summary.md": markdown(rows),
        "summary.csv": csv_text(rows),
    }
    for name, text in texts.items():
        _replace(root / name, text)


def _replace(path, text: str) -> None:
    if "://" in os.fspath(path):
        path.write_text(text)
        return
    private = f"{path}.{os.getpid()}"
    with open(private, "w") as handle:
        handle.write(text)
    os.replace(private, path)


def progress(rows: list[dict[str, Any]]) -> str:
    """'3 points: 1 succeeded, 1 running, 1 pending, 0 failed, 0 interrupted', then the stale
    points (running, but their worker is gone) when there are any."""
    counts = state_counts(rows)
    order = ("succeeded", "running", "pending", "failed", "interrupted", "stale")
    return f"{len(rows)} points: " + ", ".join(f"{counts[s]} {s}" for s in order if s in counts)


def state_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Rows per state: every state of status.STATES, and `stale` when a row is."""
    counts = {state: sum(row["status"] == state for row in rows) for state in status_lib.STATES}
    stale = sum(row["status"] == "stale" for row in rows)
    return {**counts, "stale": stale} if stale else counts


def format_value(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in ("parameters", "non_embedding_parameters", "tokens", "train_flops"):
        return f"{float(value):.3g}"
    if key in ("train_loss", "eval_loss", "eval_bits_per_byte"):
        return f"{value:.4f}"
    if key == "mfu":
        return f"{value:.2%}"
    if key in ("tokens_per_sec", "wall_time"):
        return f"{value:.1f}"
    if key.startswith(HARNESS_PREFIX) and isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows: list[dict[str, Any]], columns=None) -> list[list[str]]:
    columns = columns or columns_for(rows)
    return [[format_value(key, row.get(key)) for _, key in columns] for row in rows]


def markdown(rows: list[dict[str, Any]], columns=None) -> str:
    columns = columns or columns_for(rows)
    header = [title for title, _ in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
              for cells in table(rows, columns)]
    return f"{progress(rows)}\n\n" + "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Full-precision values, one column per field (overrides as JSON)."""
    keys = [key for _, key in columns_for(rows)] + ["overrides"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(keys)
    for row in rows:
        writer.writerow(["" if row.get(k) is None else
                         json.dumps(row[k]) if isinstance(row.get(k), (dict, list)) else row[k]
                         for k in keys])
    return out.getvalue()


def plain_table(header: list[str], cells: list[list[str]]) -> str:
    """Aligned columns for the terminal."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *cells)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
             for line in [header, *cells]]
    return "\n".join(lines)
