"""One writer per run directory: the lock's record, live holders refused, dead ones taken over,
and run directories that cannot be written refused in one line."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from lmjax.errors import CheckpointError
from lmjax.runs.layout import RunLayout
from lmjax.runs.lock import RunLock

HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from lmjax.runs.layout import RunLayout
    from lmjax.runs.lock import RunLock
    RunLock(RunLayout.at(sys.argv[1])).acquire()
    print("locked", flush=True)
    time.sleep(120)
""")


def hold_lock_in_another_process(run_dir) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def proc_start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[19])


def test_the_lock_records_host_pid_and_start_time_and_is_released(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    with RunLock(layout):
        record = json.loads(layout.lock.read_text())
        assert record["host"] == socket.gethostname() and record["pid"] == os.getpid()
        assert record["process_start_ticks"] == proc_start_ticks(os.getpid())
        assert record["started"].endswith("Z")
    assert not layout.lock.exists()
    assert sorted(p.name for p in layout.root.iterdir()) == []


def test_a_live_holder_is_refused_in_one_line_then_a_killed_one_is_taken_over(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    holder = hold_lock_in_another_process(layout.root)
    try:
        with pytest.raises(CheckpointError) as err:
            RunLock(layout).acquire()
        message = str(err.value)
        assert "\n" not in message
        record = json.loads(layout.lock.read_text())
        assert f"pid {holder.pid} on {socket.gethostname()}" in message
        assert record["started"] in message and str(layout.lock) in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with pytest.warns(UserWarning, match=f"left by pid {holder.pid} .* no longer running"):
        lock = RunLock(layout).acquire()
    assert json.loads(layout.lock.read_text())["pid"] == os.getpid()
    lock.release()
    assert sorted(p.name for p in layout.root.iterdir()) == []


def test_one_process_cannot_take_its_own_run_dir_twice(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    with RunLock(layout), pytest.raises(CheckpointError, match=f"pid {os.getpid()}"):
        RunLock(layout).acquire()


def test_a_reused_pid_is_recognised_by_its_start_time(tmp_path):
    """A live process whose start time differs from the record is not the holder."""
    layout = RunLayout.at(tmp_path / "run")
    layout.root.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = {"host": socket.gethostname(), "pid": other.pid, "started": "long ago",
                 "process_start_ticks": proc_start_ticks(other.pid) - 1, "token": "old"}
        layout.lock.write_text(json.dumps(stale))
        with pytest.warns(UserWarning, match="no longer running"), RunLock(layout):
            assert json.loads(layout.lock.read_text())["pid"] == os.getpid()
    finally:
        other.kill()
        other.wait()


def test_a_holder_on_another_host_is_never_presumed_dead(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    layout.root.mkdir()
    record = {"host": "some-other-host", "pid": 2**22 + 1, "started": "2026-01-01T00:00:00Z"}
    layout.lock.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="in use by pid 4194305 on some-other-host"):
        RunLock(layout).acquire()
    assert json.loads(layout.lock.read_text()) == record


def test_release_leaves_a_lock_that_another_process_took_over(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    lock = RunLock(layout).acquire()
    theirs = {"host": "some-other-host", "pid": 7, "started": "now", "token": "theirs"}
    layout.lock.write_text(json.dumps(theirs))
    lock.release()
    assert json.loads(layout.lock.read_text()) == theirs


def test_a_run_dir_that_is_a_file_or_under_a_file_is_refused_in_one_line(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(CheckpointError, match=r"is a file, not a directory") as err:
        RunLock(RunLayout.at(a_file)).acquire()
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match=f"lies under {a_file}, which is a file"):
        RunLock(RunLayout.at(a_file / "run")).acquire()
    assert a_file.read_text() == "mine"


READ_ONLY_ATTEMPT = textwrap.dedent("""
    import sys
    from lmjax.errors import CheckpointError
    from lmjax.runs.layout import RunLayout
    from lmjax.runs.lock import RunLock
    for path in sys.argv[1:]:
        try:
            RunLock(RunLayout.at(path)).acquire()
            print("acquired", path)
        except CheckpointError as err:
            print(err)
""")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_a_run_dir_on_a_read_only_file_system_is_refused_in_one_line(tmp_path):
    """A real read-only mount: a bind mount remounted read-only inside an unprivileged user and
    mount namespace (`unshare -rm`), so root's permission bypass cannot make it writable."""
    target = tmp_path / "ro"
    target.mkdir()
    (target / "existing_run").mkdir()
    script = (f"mount --bind {target} {target} && mount -o remount,ro,bind {target} && "
              f"exec {sys.executable} -c '{READ_ONLY_ATTEMPT}' {target / 'existing_run'} "
              f"{target / 'new' / 'run'}")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0 and "unshare" in result.stderr:
        pytest.skip(f"user namespaces are not permitted here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        f"run_dir {target / 'existing_run'} is on a read-only file system: choose a writable run_dir",
        f"run_dir {target / 'new' / 'run'} is on a read-only file system: choose a writable run_dir",
    ]
    assert sorted(p.name for p in target.iterdir()) == ["existing_run"]


def test_a_lock_that_cannot_be_written_leaves_no_private_file(tmp_path, monkeypatch):
    """A full disk lets the private record file be created, then fails its write (here: the
    fsync that follows, failing with ENOSPC); nothing of the attempt may stay behind."""
    def no_space(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    layout = RunLayout.at(tmp_path / "run")
    with pytest.raises(CheckpointError) as err:
        RunLock(layout).acquire()
    assert str(err.value) == (f"run_dir {layout.root} cannot be written (no space left on "
                              "device): free some space")
    assert sorted(p.name for p in layout.root.iterdir()) == []


@pytest.mark.parametrize("under", [False, True])
def test_lmjax_train_on_a_run_dir_that_is_or_lies_under_a_file_exits_2_in_one_line(
        tmp_path, capsys, under):
    from lmjax import cli

    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    run_dir = a_file / "run" if under else a_file
    code = cli.main(["train", "--config", "gpt_tiny", f"run_dir={run_dir}", "train.steps=2"])
    err = capsys.readouterr().err
    assert code == 2 and err.endswith("\n") and "Traceback" not in err
    last = err.rstrip("\n").splitlines()[-1]
    assert last.startswith(f"lmjax train: error: run_dir {run_dir} ")
    assert ("lies under" if under else "is a file") in last
    assert a_file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_the_bucket_branch_writes_reads_back_and_refuses_a_present_lock(tmp_path, monkeypatch):
    """Buckets have no atomic create-if-absent through epath: the lock is written, read back
    and compared. The branch is exercised on a local path treated as remote."""
    from lmjax.runs import lock as lock_module

    monkeypatch.setattr(lock_module, "_is_local", lambda path: False)
    layout = RunLayout.at(tmp_path / "run")
    lock = RunLock(layout).acquire()
    assert json.loads(layout.lock.read_text())["token"] == lock.record["token"]
    with pytest.raises(CheckpointError, match=f"in use by pid {os.getpid()}"):
        RunLock(layout).acquire()
    lock.release()
    assert not layout.lock.exists()
