"""A tiny real sweep end to end on the local executor: points run in subprocesses, a failing
point is recorded while the others succeed, a worker killed mid-point is resumed from its
checkpoint, finished points are never rerun; the CLI's dry-run and status read the same files."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import pytest

from lmjax import cli
from lmjax.sweep import load_spec, points
from lmjax.sweep import status as status_lib
from lmjax.sweep.executors.local import LocalExecutor
from lmjax.sweep.runner import RunOptions, point_dir, prepare, run_sweep, select

# Point b runs long enough (60 steps) to be killed between its checkpoints; c's corpus does
# not exist, which only training finds out (validation cannot). Workers see one CPU device
# (compiles are several times faster than on the suite's eight simulated ones).
SWEEP = """
    name: tiny
    base: gpt_tiny
    overrides: {train.peak_flops: 1.0e9, train.eval_every: 1000, train.eval_batches: 1,
                train.log_every: 5, train.warmup_steps: 1}
    zip:
      label: [a, b, c]
      train.steps: [3, 60, 3]
      checkpoint.every: [5, 10, 5]
      data.corpus: [tiny_shakespeare, tiny_shakespeare, /nonexistent/corpus.txt]
"""


def snapshot(directory):
    """Every file under a point's directory with its mtime and, for status.json, its bytes."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            found[path] = os.stat(path).st_mtime_ns
    found["status"] = (directory / status_lib.STATUS_FILE).read_bytes()
    return found


def kill_at_checkpoint(directory, step):
    """Runs the point's worker and SIGKILLs it once checkpoint `step` exists."""
    process = subprocess.Popen([sys.executable, "-m", "lmjax.sweep.worker", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (directory / "checkpoints" / str(step)).exists():
        assert process.poll() is None and time.time() < deadline, "the worker ended before its checkpoint"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.e2e  # a slow end-to-end check: .ci/run's second step
def test_sweep_runs_fails_one_is_killed_resumes_and_skips_finished(tmp_path, capsys, monkeypatch):
    jax.devices()  # this process keeps its eight devices; only the workers get one
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    file = tmp_path / "tiny.yaml"
    file.write_text(textwrap.dedent(SWEEP))
    spec = load_spec(file, output_dir=str(tmp_path / "sweep"))
    found = points(spec)
    a, b, c = (point_dir(spec, p) for p in found)
    options = RunOptions(stale_after=600)

    counts = run_sweep(spec, select(found, "label=[ac],*"), LocalExecutor(), options)
    assert counts["succeeded"] == 1 and counts["failed"] == 1
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "results.jsonl").read_text().splitlines()]
    assert [row["status"] for row in rows] == ["succeeded", "pending", "failed"]  # every point, not the --only ones
    failed = status_lib.read_status(c)
    assert failed["state"] == "failed" and "nonexistent" in failed["error"] and "\n" not in failed["error"]
    done_a = status_lib.read_status(a)
    assert done_a["result"]["steps"] == 3 and done_a["result"]["tokens_seen"] == 3 * 8 * 32
    before = snapshot(a)

    prepare(spec, found)
    kill_at_checkpoint(b, 10)
    assert status_lib.read_status(b)["state"] == "running"  # its holder died mid-point

    counts = run_sweep(spec, found, LocalExecutor(), options)
    assert counts == {"pending": 0, "running": 0, "succeeded": 2, "failed": 1, "interrupted": 0}
    assert snapshot(a) == before  # finished point untouched: same status bytes, same mtimes
    resumed = status_lib.read_status(b)
    assert resumed["attempts"] == 2 and resumed["result"]["start_step"] >= 10
    assert resumed["result"]["steps"] == 60 and resumed["result"]["tokens_seen"] == 60 * 8 * 32
    logged = [json.loads(line)["step"] for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged)) and logged[-1] == 60  # each step once, in order
    assert status_lib.read_status(c)["attempts"] == 2  # failed points are retried

    rows = [json.loads(line) for line in (tmp_path / "sweep" / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["succeeded", "succeeded", "failed"]
    assert rows[1]["parameters"] == resumed["result"]["parameters"] and rows[1]["train_flops"] > 0
    assert "2 succeeded" in (tmp_path / "sweep" / "summary.md").read_text()

    assert cli.main(["sweep", "run", str(file), "--output-dir", str(tmp_path / "sweep"), "--no-retry"]) == 1
    assert status_lib.read_status(c)["attempts"] == 2  # --no-retry left it alone
    capsys.readouterr()
    assert cli.main(["sweep", "status", str(file), "--output-dir", str(tmp_path / "sweep")]) == 0
    out = capsys.readouterr().out
    assert "3 points: 2 succeeded, 0 running, 0 pending, 1 failed" in out and "nonexistent" in out


def test_dry_run_validates_and_estimates_without_writing(tmp_path, capsys):
    file = tmp_path / "dry.yaml"
    file.write_text("base: gpt_tiny\noverrides: {train.steps: 10}\ngrid: {model.d_model: [32, 64]}\n")
    out_dir = tmp_path / "sweep"
    assert cli.main(["sweep", "run", str(file), "--output-dir", str(out_dir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"2 points valid for {jax.device_count()} devices" in out and "model FLOP/s on this machine" in out
    assert out.count("pending") == 2 and not out_dir.exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: gpt_tiny\ngrid: {mesh.data: [3]}\n")
    assert cli.main(["sweep", "run", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "point data=3: mesh data*fsdp*tensor = 3*1*1 = 3" in err and err.count("\n") == 1
