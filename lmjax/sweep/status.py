"""A point's state on disk: `status.json`, atomic claims and heartbeats.

Each point's run directory holds, beside the run's own files:

```
point.json         what the point is: name, hash, values, overrides, resolved config, plan
status.json        pending | running (host, pid, heartbeat, stale_after) | succeeded (result) |
                   failed (one-line error) | interrupted (stopped with a checkpoint)
claims/<n>         the n-th claim: host, pid, process start, token; its mtime is the heartbeat
worker.log         the point's output when an executor ran it in a subprocess
```

Claiming is creating `claims/<n+1>` exclusively: locally the record is written to a private
file and hard-linked into place (`lmjax.runs.lock`'s create, O_CREAT|O_EXCL where links are
unsupported), so among workers racing for a point, processes or hosts on one POSIX or NFS
filesystem, exactly one creates it. A claim is released when `status.json` records its end
(succeeded, failed, interrupted); a held claim may be taken over (claim n+1) when its holder
is provably dead (same host, pid gone or reused) or its heartbeat is older than `stale_after`
seconds (clocks of hosts sharing a sweep must agree to well within that). On a bucket
(`gs://`, fsspec) `etils.epath` has no exclusive create: the claim is written, read back and
compared, which catches all but near-simultaneous claims; run one worker process per bucket
sweep, or the Ray executor, whose single driver decides what runs.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from etils import epath

from lmjax.runs.layout import as_path
from lmjax.runs.lock import create_exclusive, holder_is_dead, process_record

STATES = ("pending", "running", "succeeded", "failed", "interrupted")
RELEASED = ("succeeded", "failed", "interrupted")
POINT_FILE = "point.json"
STATUS_FILE = "status.json"
CLAIMS_DIR = "claims"
LOG_FILE = "worker.log"
DEFAULT_STALE_AFTER = 600.0  # seconds: `lmjax sweep run --stale-after`'s default


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_json(path: epath.Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return None


def write_json(path: epath.Path, record: dict[str, Any]) -> None:
    """Replaces `path` whole: a reader sees the old or the new record, never half of one."""
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if "://" in os.fspath(path):
        path.write_text(text)  # one object write: atomic on GCS and S3
        return
    private = f"{path}.{os.getpid()}.{uuid.uuid4().hex}"
    with open(private, "w") as handle:
        handle.write(text)
    os.replace(private, path)


def read_status(point_dir: str | os.PathLike) -> dict[str, Any]:
    """The point's status record; `{"state": "pending"}` when none has been written."""
    return read_json(as_path(point_dir) / STATUS_FILE) or {"state": "pending"}


def write_status(point_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    write_json(as_path(point_dir) / STATUS_FILE, {**record, "updated": now()})


def latest_claim(point_dir: str | os.PathLike) -> tuple[int, dict[str, Any] | None, float | None]:
    """The highest claim number (0: never claimed), its record and its heartbeat (mtime)."""
    claims = as_path(point_dir) / CLAIMS_DIR
    numbers = [int(p.name) for p in claims.iterdir() if p.name.isdigit()] if claims.is_dir() else []
    if not numbers:
        return 0, None, None
    path = claims / str(max(numbers))
    try:
        beat = path.stat().mtime
    except FileNotFoundError:
        beat = None
    return max(numbers), read_json(path), beat


def shown_state(point_dir: str | os.PathLike, status: dict[str, Any]) -> str:
    """The state to show: `running` only while its holder lives and beats; a running point
    whose worker died or whose heartbeat is older than its limit (the `stale_after` the worker
    recorded, or DEFAULT_STALE_AFTER) is `stale`: the next `lmjax sweep run` takes it over."""
    if status["state"] != "running":
        return status["state"]
    _, holder, beat = latest_claim(point_dir)
    limit = float(status.get("stale_after") or DEFAULT_STALE_AFTER)
    return "stale" if is_stale(holder, beat, limit) else "running"


def availability(point_dir: str | os.PathLike, *, stale_after: float, retry: bool = True) -> str:
    """'done' (succeeded, or failed and no retry), 'busy' (held by a live worker) or 'open'."""
    return _decide(point_dir, stale_after, retry)[0]


def _decide(point_dir, stale_after: float, retry: bool) -> tuple[str, int]:
    """The verdict and the claim number it was made on: a claim must be `number + 1` of
    that same reading, so a claim created meanwhile makes the new one fail, not pile on."""
    status = read_status(point_dir)
    if status["state"] == "succeeded" or status["state"] == "failed" and not retry:
        return "done", 0
    number, holder, beat = latest_claim(point_dir)
    released = status.get("claim") == number and status["state"] in RELEASED
    if number and not released and not is_stale(holder, beat, stale_after):
        return "busy", number
    return "open", number


def is_stale(holder: dict[str, Any] | None, beat: float | None, stale_after: float) -> bool:
    """A claim's holder is gone: provably dead on this host, or silent for `stale_after` s."""
    if holder is not None and holder_is_dead(holder):
        return True
    return beat is None or time.time() - beat > stale_after


class Claim:
    """A held claim on a point: `heartbeat()` refreshes it, `held()` says whether a later
    claim (a takeover after a stale heartbeat) has superseded it."""

    def __init__(self, point_dir: str | os.PathLike, number: int, record: dict[str, Any]):
        self.point_dir = as_path(point_dir)
        self.number = number
        self.record = record

    @property
    def path(self) -> epath.Path:
        return self.point_dir / CLAIMS_DIR / str(self.number)

    def held(self) -> bool:
        latest, holder, _ = latest_claim(self.point_dir)
        return latest == self.number and (holder or {}).get("token") == self.record["token"]

    def heartbeat(self) -> bool:
        """Refreshes the claim's mtime; False (and nothing written) once it is not held."""
        if not self.held():
            return False
        if "://" in os.fspath(self.path):
            self.path.write_text(json.dumps(self.record))
        else:
            os.utime(self.path)
        return True


def try_claim(point_dir: str | os.PathLike, *, stale_after: float, retry: bool = True) -> Claim | None:
    """The next claim on the point if it is open and no other worker takes it first."""
    verdict, number = _decide(point_dir, stale_after, retry)
    if verdict != "open":
        return None
    record = {**process_record(), "number": number + 1}
    path = as_path(point_dir) / CLAIMS_DIR / str(number + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not _create(path, json.dumps(record)):
        return None
    return Claim(point_dir, number + 1, record)


def _create(path: epath.Path, text: str) -> bool:
    if "://" not in os.fspath(path):
        return create_exclusive(os.fspath(path), text)
    if path.exists():
        return False
    path.write_text(text)
    return path.read_text() == text


class Heartbeat:
    """Refreshes a claim (and the running status' heartbeat) every `every` seconds from a
    background thread; `lost` is set when another worker has taken the point over."""

    def __init__(self, claim: Claim, status: dict[str, Any], every: float):
        self.claim, self.status, self.every = claim, status, every
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if not self.claim.heartbeat():
                self.lost.set()
                return
            write_status(self.claim.point_dir, {**self.status, "heartbeat": now()})


def running_record(claim: Claim, attempts: int, stale_after: float = DEFAULT_STALE_AFTER) -> dict[str, Any]:
    return {"state": "running", "claim": claim.number, "host": socket.gethostname(),
            "pid": os.getpid(), "started": now(), "heartbeat": now(), "attempts": attempts,
            "stale_after": stale_after}
