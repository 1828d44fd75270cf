"""One writer per run directory: a lock file naming the host, pid and start time of its holder.

Two trainers on one run directory would interleave `metrics.jsonl` and race inside orbax, so the
trainer takes `RunLock(layout)` before it writes anything there and releases it on exit (context
manager or `release()`). On multi-host runs process 0 takes it for the run (the trainer decides).

Locally the lock is created atomically: the record is written to a private file and hard-linked
to `RunLayout.lock`, which fails if the lock exists (O_CREAT|O_EXCL where links are not
supported), so a reader never sees half a record. A lock left by a process that died (SIGKILL,
power loss) on the same host is taken over with a warning: its pid is not alive, or the pid now
belongs to a process started at another time. On a bucket (`gs://`, fsspec) there is no atomic
create-if-absent through `etils.epath`: the lock is written, read back and compared, which
catches all but a near-simultaneous start; a holder on another host is never presumed dead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
import uuid
import warnings

from etils import epath

from lmjax.errors import CheckpointError, LmjaxWarning
from lmjax.runs.layout import RunLayout


class RunLock:
    """The run directory's single-writer lock; `with RunLock(layout):` holds it for a block."""

    def __init__(self, layout: RunLayout):
        self.layout = layout
        self.path = layout.lock
        self.record = process_record()
        self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> RunLock:
        """Takes the lock, creating the run directory; a one-line `CheckpointError` if it cannot."""
        ensure_writable_dir(self.layout.root)
        for _ in range(3):
            try:
                created = self._try_create()
            except OSError as err:
                raise CheckpointError(_os_error_message(self.layout.root, err)) from None
            if created:
                self.held = True
                return self
            holder = _read_record(self.path)
            if holder is None:
                continue  # released between our attempt and the read: try again
            if not holder_is_dead(holder):
                raise CheckpointError(_busy_message(self.path, holder))
            warnings.warn(
                f"taking over the lock {self.path} left by pid {holder.get('pid')} on "
                f"{holder.get('host')} (started {holder.get('started')}), which is no longer "
                "running",
                LmjaxWarning, stacklevel=2,
            )
            self._remove_stale(holder)
        raise CheckpointError(f"could not take the lock {self.path}: another process keeps "
                              "creating it; make sure only one trainer uses this run_dir")

    def release(self) -> None:
        """Removes the lock if this object still holds it (idempotent)."""
        if not self.held:
            return
        self.held = False
        holder = _read_record(self.path)
        if holder is not None and holder.get("token") == self.record["token"]:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _try_create(self) -> bool:
        text = json.dumps(self.record)
        if _is_local(self.path):
            return create_exclusive(os.fspath(self.path), text)
        if self.path.exists():
            return False
        self.path.write_text(text)
        return (_read_record(self.path) or {}).get("token") == self.record["token"]

    def _remove_stale(self, holder: dict) -> None:
        """Moves the dead holder's lock aside by rename, so two takers cannot both remove it."""
        aside = self.path.parent / f"{self.path.name}.stale-{self.record['token']}"
        try:
            self.path.rename(aside)
        except FileNotFoundError:
            return
        moved = _read_record(aside)
        if moved is not None and moved != holder:
            aside.rename(self.path)  # a live taker's lock, not the stale one: put it back
            return
        aside.unlink()


def ensure_writable_dir(root: epath.Path, name: str = "run_dir") -> None:
    """Creates the run directory (or another output directory, called `name` in messages),
    turning 'is a file', 'under a file' and unwritable file systems into one-line errors
    instead of tracebacks."""
    if root.exists() and not root.is_dir():
        raise CheckpointError(f"{name} {root} is a file, not a directory: choose another {name}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CheckpointError(
            f"{name} {root} lies under {_file_ancestor(root) or 'a file'}, which is a file: "
            f"choose another {name}"
        ) from None
    except OSError as err:
        raise CheckpointError(_os_error_message(root, err, name)) from None


def check_writable_dir(root: epath.Path, name: str) -> None:
    """`ensure_writable_dir`'s checks without creating anything, for a command that must check
    its output directory before expensive work that may still fail (and leave no directory)."""
    if root.exists() and not root.is_dir():
        raise CheckpointError(f"{name} {root} is a file, not a directory: choose another {name}")
    if not _is_local(root):
        return
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise CheckpointError(f"{name} {root} lies under {existing}, which is a file: "
                              f"choose another {name}")
    if existing is not None and not os.access(existing, os.W_OK):
        read_only = os.statvfs(existing).f_flag & os.ST_RDONLY
        raise CheckpointError(_os_error_message(
            root, OSError(errno.EROFS if read_only else errno.EACCES, ""), name))


def _os_error_message(root: epath.Path, err: OSError, name: str = "run_dir") -> str:
    if err.errno == errno.EROFS:
        return f"{name} {root} is on a read-only file system: choose a writable {name}"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"{name} {root} is not writable (permission denied): choose a writable {name}"
    if err.errno == errno.ENOSPC:
        return f"{name} {root} cannot be written (no space left on device): free some space"
    return f"{name} {root} cannot be written ({err.strerror or err}): choose another {name}"


def _file_ancestor(root: epath.Path) -> epath.Path | None:
    for parent in root.parents:
        if parent.exists():
            return parent if not parent.is_dir() else None
    return None


def create_exclusive(path: str, text: str) -> bool:
    """Atomically creates `path` with `text` (complete before anyone can see it)."""
    private = f"{path}.{os.getpid()}.{uuid.uuid4().hex}"
    try:  # the private file goes whatever fails, also its write on a full disk
        with open(private, "x") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(private, path)
        return True
    except FileExistsError:
        return False
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        return _create_exclusive(path, text)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(private)


def _create_exclusive(path: str, text: str) -> bool:
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return True


def process_record() -> dict:
    """This process as a lock or claim holder: host, pid, start times and a token."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "process_start_ticks": _process_start_ticks(os.getpid()),
        "token": uuid.uuid4().hex,
    }


def _read_record(path: epath.Path) -> dict | None:
    """The lock's record; None if there is no lock. An unreadable record counts as a holder
    that cannot be judged, so it is never taken over."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {"host": "unknown host", "pid": "unknown", "started": "at an unknown time"}
    return record if isinstance(record, dict) else {"host": "unknown host", "pid": "unknown"}


def holder_is_dead(holder: dict) -> bool:
    """Whether the holder is provably dead: same host, and its pid gone or reused."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if not _pid_alive(pid) or _is_zombie(pid):
        return True
    recorded = holder.get("process_start_ticks")
    current = _process_start_ticks(pid)
    return recorded is not None and current is not None and recorded != current


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet still answers `kill(pid, 0)`."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] == "Z"


def _process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), to detect pid reuse."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields is not None else None


def _proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (state is [0], start time [19]); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def _busy_message(path: epath.Path, holder: dict) -> str:
    return (
        f"run_dir {path.parent} is in use by pid {holder.get('pid')} on {holder.get('host')} "
        f"(started {holder.get('started')}): wait for it to finish or stop it, or use another "
        f"run_dir; if that process is gone, delete {path}"
    )


def _is_local(path: epath.Path) -> bool:
    return "://" not in os.fspath(path)
