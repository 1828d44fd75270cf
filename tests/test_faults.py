"""Fault injection against `lmjax train`: each fault is followed by a resume, and afterwards the
per-step losses equal an uninterrupted run's bitwise, `metrics.jsonl` has every step exactly
once and in order, and no readable checkpoint was removed.

Faults: kill -9 at steps drawn from seeds, kill -9 inside a save's commit, SIGTERM, a damaged
latest checkpoint, a NaN gradient with a finite loss, a full disk (RLIMIT_FSIZE: the kernel
refuses writes past a size with EFBIG), two trainers on one run directory, and what a crash
leaves at once (a stale lock, a torn metrics line, a damaged checkpoint). Runs that must
die or hold a lock are real subprocesses; one uninterrupted reference run (and a copy of it cut
back to step 8, as a run killed just after that checkpoint would leave it) serves them all.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import yaml

from lmjax import cli

pytestmark = pytest.mark.e2e  # real `lmjax train` processes killed, limited or locked out: CI's second step

STEPS = 16
RUN = ["train.log_every=1", "checkpoint.every=4", "checkpoint.keep=10", "train.eval_every=1000",
       "train.peak_flops=1e12"]
CHECKPOINT_BYTES_LIMIT = 150_000  # gpt_tiny's largest checkpoint file is ~300 kB

# `lmjax train` with orbax's commit patched to SIGKILL the process just before the step
# directory of KILL_IN_SAVE_OF is renamed into place: every file of the save is written, the
# commit is not.
KILL_INSIDE_SAVE = textwrap.dedent("""
    import os, signal, sys
    from orbax.checkpoint._src.path import atomicity
    commit = atomicity.AtomicRenameTemporaryPath.finalize
    async def finalize(self):
        if self.get_final().name == os.environ["KILL_IN_SAVE_OF"]:
            os.kill(os.getpid(), signal.SIGKILL)
        return await commit(self)
    atomicity.AtomicRenameTemporaryPath.finalize = finalize
    from lmjax import cli
    sys.exit(cli.main(sys.argv[1:]))
""")


def train_args(run_dir, *overrides: str) -> list[str]:
    return ["train", "--config", "gpt_tiny", f"run_dir={run_dir}", *RUN, f"train.steps={STEPS}",
            *overrides]


def lmjax_train(run_dir, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "lmjax.cli", *train_args(run_dir, *overrides)]


def run_to_end(run_dir, *overrides: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(lmjax_train(run_dir, *overrides), capture_output=True, text=True,
                          timeout=600, **kwargs)


def metrics(run_dir) -> list[dict]:
    """metrics.jsonl as strict JSON (a bare NaN is refused); a half-written last line ignored."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(
                ValueError(f"{c} in metrics.jsonl"))))
        except json.JSONDecodeError:
            break
    return rows


def last_step(run_dir) -> int:
    return max((r["step"] for r in metrics(run_dir)), default=0)


def checkpoints(run_dir) -> list[int]:
    """Committed step directories (not orbax's temporary ones, not the quarantine)."""
    folder = run_dir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() \
        else []


def wait_for(predicate, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out waiting for the training subprocess"
        time.sleep(0.01)


def error_line(stderr: str) -> str:
    """The CLI's error: the last line of stderr, with no traceback anywhere before it."""
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("lmjax train: error: "), stderr[-3000:]
    return last


def assert_same_run(run_dir, reference, steps: int = STEPS) -> None:
    """Every step once, in order, with the reference's loss bitwise."""
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    expected = {r["step"]: r["loss"] for r in metrics(reference)}
    assert {r["step"]: r["loss"] for r in rows} == {s: expected[s] for s in range(1, steps + 1)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of 16 steps, checkpoints every 4 (all kept)."""
    run_dir = tmp_path_factory.mktemp("faults") / "reference"
    result = run_to_end(run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert checkpoints(run_dir) == [4, 8, 12, 16]
    assert [r["step"] for r in metrics(run_dir)] == list(range(1, STEPS + 1))
    return run_dir


@pytest.fixture
def at_step_8(reference, tmp_path):
    """The reference as a run killed right after its step-8 checkpoint would leave it."""
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    for step in (12, 16):
        shutil.rmtree(run_dir / "checkpoints" / str(step))
    rows = [r for r in metrics(run_dir) if r["step"] <= 8]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "loss_curve.png").unlink()
    return run_dir


@pytest.mark.parametrize("seed", [0])
def test_kill_9_at_three_random_steps_then_resume(reference, tmp_path, seed):
    """Three SIGKILLs at steps drawn from the seed, at least 4 apart (so each lands in the
    newly started process), then a resume to the end."""
    rng = random.Random(seed)
    targets = [rng.randint(2, 4)]
    targets += [targets[-1] + rng.randint(4, 5) for _ in range(2)]
    run_dir = tmp_path / "run"
    seen: set[int] = set()
    for target in targets:
        process = subprocess.Popen(lmjax_train(run_dir), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        wait_for(lambda: last_step(run_dir) >= target, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert last_step(run_dir) < STEPS, "the run finished before it was killed"
        assert seen <= set(checkpoints(run_dir)) <= {4, 8, 12}
        seen = set(checkpoints(run_dir))
    result = run_to_end(run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(run_dir, reference)
    assert checkpoints(run_dir) == [4, 8, 12, 16]


def test_kill_9_inside_a_save_leaves_the_previous_checkpoint_latest(reference, at_step_8):
    env = {**os.environ, "KILL_IN_SAVE_OF": "12"}
    killed = subprocess.run([sys.executable, "-c", KILL_INSIDE_SAVE, *train_args(at_step_8)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    leftovers = [p.name for p in (at_step_8 / "checkpoints").iterdir()]
    assert any(name.startswith("12.orbax-checkpoint-tmp") for name in leftovers), leftovers
    assert checkpoints(at_step_8) == [4, 8]
    result = run_to_end(at_step_8)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from step 8" in result.stderr
    assert_same_run(at_step_8, reference)
    assert sorted(p.name for p in (at_step_8 / "checkpoints").iterdir()) == ["12", "16", "4", "8"]


def test_sigterm_saves_where_it_stops_and_the_resume_loses_nothing(reference, at_step_8):
    process = subprocess.Popen(lmjax_train(at_step_8), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    wait_for(lambda: last_step(at_step_8) >= 10, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    stopped_at = last_step(at_step_8)
    assert 10 <= stopped_at < STEPS and stopped_at in checkpoints(at_step_8)
    result = run_to_end(at_step_8)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from step {stopped_at}" in result.stderr
    assert_same_run(at_step_8, reference)
    assert {4, 8, 12, 16, stopped_at} <= set(checkpoints(at_step_8))


def test_a_damaged_latest_checkpoint_is_quarantined_and_the_run_resumes(reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    files = [p for p in (run_dir / "checkpoints" / "16").rglob("*") if p.is_file()]
    largest = max(files, key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes()[:1000])
    result = run_to_end(run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the checkpoint of step 16 is damaged" in result.stderr
    assert "resuming from step 12" in result.stderr and "Traceback" not in result.stderr
    (moved,) = (run_dir / "checkpoints" / "quarantine").iterdir()
    assert moved.name.startswith("16-") and (moved / "REASON.txt").read_text().startswith("step 16")
    assert (moved / largest.relative_to(run_dir / "checkpoints" / "16")).stat().st_size == 1000
    assert_same_run(run_dir, reference)
    assert checkpoints(run_dir) == [4, 8, 12, 16]


def test_a_nan_gradient_with_a_finite_loss_stops_before_its_checkpoint(tmp_path, capsys):
    """gpt_tiny with RMSNorm at train.lr=1e6: step 4's loss is finite, its gradient norm NaN
    (issue 9). (With LayerNorm the loss overflows at the same step as the gradient.)"""
    diverging = train_args(tmp_path, "train.lr=1e6", "model.norm=rmsnorm", "checkpoint.every=2",
                           "train.steps=8")
    assert cli.main(diverging) == 2
    err = capsys.readouterr().err
    line = error_line(err)
    assert "the gradient norm became nan at step 4" in line and "--restart-from 2" in line
    assert checkpoints(tmp_path) == [2]
    before = metrics(tmp_path)
    assert [r["step"] for r in before] == [1, 2, 3] and all(math.isfinite(r["loss"])
                                                           for r in before)
    restarted = [*train_args(tmp_path, "train.lr=3e-3", "model.norm=rmsnorm", "checkpoint.every=2",
                             "train.steps=8"), "--restart-from", "2"]
    assert cli.main(restarted) == 0
    after = metrics(tmp_path)
    assert [r["step"] for r in after] == list(range(1, 9))
    assert [r["loss"] for r in after[:2]] == [r["loss"] for r in before[:2]]
    assert all(np.isfinite(r["loss"]) for r in after)
    assert checkpoints(tmp_path) == [2, 4, 6, 8]
    (restart,) = [json.loads(line) for line in (tmp_path / "restarts.jsonl").read_text().splitlines()]
    assert restart["step"] == 2 and restart["changes"] == {"train.lr": {"old": 1e6, "new": 3e-3}}
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["lr"] == 3e-3


# `lmjax train` whose writes past CHECKPOINT_BYTES_LIMIT fail with EFBIG (SIGXFSZ ignored, so
# the kernel returns the error instead of killing the process), as on a full disk.
LIMITED_FILE_SIZE = textwrap.dedent(f"""
    import os, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, ({CHECKPOINT_BYTES_LIMIT}, resource.RLIM_INFINITY))
    os.execv(sys.executable, [sys.executable, "-m", "lmjax.cli", *sys.argv[1:]])
""")


def test_a_full_disk_stops_the_run_in_one_line_and_the_previous_checkpoint_resumes(
        reference, at_step_8):
    full = subprocess.run([sys.executable, "-c", LIMITED_FILE_SIZE, *train_args(at_step_8)],
                          capture_output=True, text=True, timeout=600)
    assert full.returncode == 2, full.stderr[-3000:]
    line = error_line(full.stderr)
    assert f"saving the checkpoint of step 12 to {at_step_8 / 'checkpoints'} failed" in line
    assert "file size limit" in line and "the latest checkpoint is still step 8" in line
    assert checkpoints(at_step_8) == [4, 8]
    result = run_to_end(at_step_8)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from step 8" in result.stderr
    assert_same_run(at_step_8, reference)
    assert checkpoints(at_step_8) == [4, 8, 12, 16]


def test_a_second_trainer_on_the_same_run_dir_is_refused_in_one_line(reference, at_step_8):
    """The first trainer is stopped (SIGSTOP) while it holds the lock, so the second certainly
    starts while the first is alive; then the first is continued and finishes."""
    first = subprocess.Popen(lmjax_train(at_step_8), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    wait_for(lambda: last_step(at_step_8) >= 9, first)
    first.send_signal(signal.SIGSTOP)
    try:
        listing = sorted(p.name for p in at_step_8.rglob("*"))
        logged = (at_step_8 / "metrics.jsonl").read_text()
        second = run_to_end(at_step_8)
        assert sorted(p.name for p in at_step_8.rglob("*")) == listing
        assert (at_step_8 / "metrics.jsonl").read_text() == logged
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr[-3000:]
    line = error_line(second.stderr)
    assert f"is in use by pid {first.pid}" in line
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    assert not (at_step_8 / ".lock").exists()
    assert_same_run(at_step_8, reference)
    assert checkpoints(at_step_8) == [4, 8, 12, 16]


def test_a_stale_lock_a_torn_metrics_line_and_a_damaged_checkpoint_resume_with_one_line_each(
        reference, at_step_8):
    """What a crash on a full disk can leave: the dead trainer's lock, half a metrics line and
    a damaged latest checkpoint. The resume warns once per fault, each on one line."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    (at_step_8 / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid,
                                                 "started": "2026-01-01T00:00:00Z"}))
    with (at_step_8 / "metrics.jsonl").open("a") as metrics_file:
        metrics_file.write('{"step": 9, "loss": 4.')
    files = [p for p in (at_step_8 / "checkpoints" / "8").rglob("*") if p.is_file()]
    largest = max(files, key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes()[:1000])
    result = run_to_end(at_step_8)
    assert result.returncode == 0, result.stderr[-3000:]
    warned = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert [line.split(": warning: ")[1].split(" ")[0:3] for line in warned] == [
        ["taking", "over", "the"], ["the", "checkpoint", "of"], ["dropped", "the", "torn"]], warned
    assert all(line.startswith("lmjax train: warning: ") for line in warned)
    assert "warnings.warn(" not in result.stderr and "Traceback" not in result.stderr
    (moved,) = (at_step_8 / "checkpoints" / "quarantine").iterdir()
    assert "<bound method" not in (moved / "REASON.txt").read_text()
    assert "resuming from step 4" in result.stderr
    assert_same_run(at_step_8, reference)
    assert not (at_step_8 / ".lock").exists()
