"""Reading a run's metrics.jsonl, damage included: what the trainer resumes from and what
`open_run` shows.

A last line without its newline that is not a record is a write cut short (a full disk, power
loss, or a run still writing it): readers leave it out, and the trainer drops it on resume with
a warning. Any other line that is not UTF-8 or not a JSON object (for the trainer: one with an
integer step) is a one-line `CheckpointError` naming the file and the line: nothing is dropped
that lmjax cannot explain. Post-training exports log records without a step.
"""

from __future__ import annotations

import json
from typing import Any

from etils import epath

from lmjax.errors import CheckpointError


def parse_metrics(path: epath.Path,
                  need_step: bool = False) -> tuple[list[dict[str, Any]], int | None]:
    """(records in file order, the number of a torn last line or None)."""
    if not path.exists():
        return [], None
    *lines, last = path.read_bytes().split(b"\n")
    records = [_record(path, number, line, need_step) for number, line in enumerate(lines, 1)
               if line.strip()]
    if not last.strip():
        return records, None
    try:
        return [*records, _record(path, len(lines) + 1, last, need_step)], None
    except CheckpointError:
        return records, len(lines) + 1


def _record(path: epath.Path, number: int, line: bytes, need_step: bool) -> dict[str, Any]:
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as err:
        problem = f"byte {err.start} is not UTF-8"
    except json.JSONDecodeError as err:
        problem = f"not JSON: {err.msg} at column {err.colno}"
    else:
        if isinstance(record, dict) and (not need_step or isinstance(record.get("step"), int)):
            return record
        problem = "not a record with an integer step" if need_step else "not a JSON object"
    raise CheckpointError(f"{path} line {number} is damaged ({problem}): move the file aside "
                          "(or repair that line) and run again; lmjax does not drop records it "
                          "cannot explain")
