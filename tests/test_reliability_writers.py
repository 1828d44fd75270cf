"""A run-directory writer that fails (metrics.jsonl, TensorBoard, the loss plot) stops `lmjax train`
in one line with exit 2 and the lock released, within a bounded time: tensorboardX's writer
thread used to die on ENOSPC and leave the trainer blocked in its queue forever.

Two ways to fail a write: an injected ENOSPC (`open` wrapped so that writes to one file fail
after a given number), deterministic and in CI; and a real full disk, a tmpfs mounted in an
unprivileged user and mount namespace and filled while the trainer runs (skipped where
namespaces are not permitted).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import types

import pytest

from lmjax.errors import CheckpointError
from lmjax.runs.layout import RunLayout
from lmjax.train.callbacks import TensorBoard

TIMEOUT = 300  # a hang fails the test instead of hanging CI
TRAIN = ["train", "--config", "gpt_tiny", "train.log_every=1", "checkpoint.every=2",
         "train.eval_every=1000", "train.peak_flops=1e12", "train.steps=6"]

# `lmjax train` in which every write to a file whose path contains FAIL_WRITES_TO fails with
# ENOSPC once FAIL_AFTER writes to such files have succeeded, whichever thread writes.
FAILING_WRITES = textwrap.dedent("""
    import builtins, errno, os, sys
    real_open, target, allowed = builtins.open, os.environ["FAIL_WRITES_TO"], int(os.environ["FAIL_AFTER"])
    done = [0]
    class Full:
        def __init__(self, handle):
            self._handle = handle
        def write(self, data):
            done[0] += 1
            if done[0] > allowed:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._handle.write(data)
        def __getattr__(self, name):
            return getattr(self._handle, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc_info):
            self._handle.close()
    def failing_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        writes = any(c in mode for c in "wax+")
        return Full(handle) if writes and target in os.fspath(file) else handle
    builtins.open = failing_open
    from lmjax import cli
    sys.exit(cli.main(sys.argv[1:]))
""")


def error_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "Exception in thread" not in stderr, stderr[-3000:]
    last = stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("lmjax train: error: "), stderr[-3000:]
    return last


def assert_unlocked(run_dir) -> None:
    """No lock, and no private lock file (`.lock.<pid>.<uuid>`) left behind."""
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".lock")]


@pytest.mark.e2e
@pytest.mark.parametrize(("written", "allowed", "named"), [
    ("tfevents", 100, "tensorboard"),
    ("metrics.jsonl", 3, "metrics.jsonl"),
    ("loss_curve.png", 0, "loss_curve.png"),
], ids=["tensorboard", "metrics", "plot"])
def test_a_writer_that_fails_stops_the_run_in_one_line_and_releases_the_lock(
        tmp_path, written, allowed, named):
    env_run = {"FAIL_WRITES_TO": written, "FAIL_AFTER": str(allowed)}
    result = subprocess.run([sys.executable, "-c", FAILING_WRITES, *TRAIN, f"run_dir={tmp_path}"],
                            capture_output=True, text=True, timeout=TIMEOUT,
                            env={**os.environ, **env_run})
    assert result.returncode == 2, result.stderr[-3000:]
    line = error_line(result.stderr)
    assert f"writing {tmp_path / named} failed: no space left on device" in line, line
    assert "run the same command again to resume" in line
    assert_unlocked(tmp_path)


# Inside `unshare -rm`: a small tmpfs, a trainer on it, the disk filled once the trainer has
# logged two steps, then a second start on the full disk. Prints what happened as JSON.
FULL_DISK = textwrap.dedent("""
    import json, os, subprocess, sys, time
    mount, train = sys.argv[1], sys.argv[2:]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mount], check=True)
    run_dir = os.path.join(mount, "run")
    command = [sys.executable, "-m", "lmjax.cli", *train, f"run_dir={run_dir}"]
    trainer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(run_dir, "metrics.jsonl")
    while trainer.poll() is None and not (os.path.exists(metrics) and open(metrics).read().count("\\n") >= 2):
        time.sleep(0.05)
    with open(os.path.join(mount, "filler"), "wb", buffering=0) as filler:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    filler.write(b"x" * size)
            except OSError:
                pass
    try:
        _, first = trainer.communicate(timeout=int(os.environ["HANG_AFTER"]))
    except subprocess.TimeoutExpired:
        trainer.kill()
        _, first = trainer.communicate()
        first += "\\nHUNG: still running after the disk filled"
    second = subprocess.run(command, capture_output=True, text=True, timeout=int(os.environ["HANG_AFTER"]))
    print(json.dumps({"first": [trainer.returncode, first], "second": [second.returncode, second.stderr],
                      "free": os.statvfs(mount).f_bavail, "names": sorted(os.listdir(run_dir))}))
""")


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_a_real_full_disk_stops_training_in_one_line_and_a_start_on_it_leaves_nothing(tmp_path):
    mount = tmp_path / "small_disk"
    mount.mkdir()
    result = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", FULL_DISK, str(mount), *TRAIN[:-1],
         "train.steps=400", "checkpoint.every=1000"],
        capture_output=True, text=True, timeout=3 * TIMEOUT, env={**os.environ, "HANG_AFTER": str(TIMEOUT)})
    if result.returncode != 0 and "unshare" in result.stderr:
        pytest.skip(f"user namespaces are not permitted here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["free"] == 0
    (code, stderr), (again, again_stderr) = seen["first"], seen["second"]
    assert code == 2, stderr[-3000:]
    assert "failed: no space left on device" in error_line(stderr)
    assert again == 2, again_stderr[-3000:]
    assert "no space left on device" in error_line(again_stderr)
    assert not [name for name in seen["names"] if name.startswith(".lock")], seen["names"]


def read_scalars(event_file) -> list[tuple[int, str, float]]:
    """(step, tag, value) of every scalar in a TFRecord event file, read frame by frame
    (8-byte length, 4-byte CRC, the Event proto, 4-byte CRC) without tensorboardX's writer."""
    from tensorboardX.proto.event_pb2 import Event

    data, offset, scalars = event_file.read_bytes(), 0, []
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        event = Event.FromString(data[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
        scalars += [(event.step, value.tag, value.simple_value) for value in event.summary.value]
    return scalars


def test_tensorboard_scalars_are_on_disk_at_each_log_and_a_failed_write_raises_there(
        tmp_path, monkeypatch):
    layout = RunLayout.at(tmp_path)
    board = TensorBoard()
    board.on_start(types.SimpleNamespace(layout=layout))
    board.on_log(1, {"step": 1, "loss": 2.5, "learning_rate": 0.125, "preempted": False})
    (event_file,) = layout.tensorboard.glob("events.out.tfevents.*")
    assert read_scalars(event_file) == [(1, "loss", 2.5), (1, "learning_rate", 0.125)]
    board.on_log(2, {"step": 2, "loss": 1.75, "eval_loss": None, "tokens_seen": 64})
    assert read_scalars(event_file)[2:] == [(2, "loss", 1.75), (2, "tokens_seen", 64.0)]

    def full(data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(board.writer._py_recordio_writer, "write", full)
    with pytest.raises(CheckpointError, match=f"writing {layout.tensorboard} failed: no space left"):
        board.on_log(3, {"step": 3, "loss": 1.5})
    board.on_close()
    assert board.writer is None
