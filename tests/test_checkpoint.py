"""Checkpointer: only keep-last-K deletes, damaged checkpoints are quarantined (never deleted),
structure mismatches are config errors, and failed saves stop with one line."""

from __future__ import annotations

import json
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax import cli
from lmjax.errors import CheckpointError
from lmjax.train.checkpoint import Checkpointer
from lmjax.train.reporting import read_metrics


def make_state(seed: int, width: int = 64) -> dict:
    key = jax.random.key(seed)
    return {"params": {"w": jax.random.normal(key, (width, width)), "b": jnp.arange(3.0) + seed},
            "step": jnp.int32(seed)}


def abstract(state: dict) -> dict:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        state)


def saved_steps(checkpointer: Checkpointer, *steps: int) -> None:
    for step in steps:
        checkpointer.save(step, make_state(step), {"position": step})
    checkpointer.wait()


def tree_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                    strict=True))


def listing(directory: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def truncate_largest_file(directory: pathlib.Path) -> None:
    files = [p for p in directory.rglob("*") if p.is_file()]
    largest = max(files, key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 3])


def test_keep_last_k_is_the_only_deletion_and_ignores_the_quarantine(tmp_path):
    directory = tmp_path / "checkpoints"
    (directory / "quarantine" / "2-20260101T000000Z").mkdir(parents=True)
    (directory / "quarantine" / "2-20260101T000000Z" / "REASON.txt").write_text("old damage\n")
    checkpointer = Checkpointer(directory, keep=2)
    saved_steps(checkpointer, 1, 3, 4, 5)
    assert checkpointer.all_steps() == [4, 5] and checkpointer.latest_step() == 5
    step, state, data = checkpointer.restore_latest(abstract(make_state(0)))
    assert step == 5 and data == {"position": 5} and tree_equal(state, make_state(5))
    checkpointer.close()
    assert sorted(p.name for p in directory.iterdir()) == ["4", "5", "quarantine"]
    assert (directory / "quarantine" / "2-20260101T000000Z" / "REASON.txt").read_text() == \
        "old damage\n"


def damage_truncate(step_dir: pathlib.Path) -> None:
    truncate_largest_file(step_dir)


def damage_garbled_metadata(step_dir: pathlib.Path) -> None:
    (step_dir / "state" / "_METADATA").write_text("{not json")


def damage_missing_data_item(step_dir: pathlib.Path) -> None:
    shutil.rmtree(step_dir / "data")


def damage_missing_manifest(step_dir: pathlib.Path) -> None:
    (step_dir / "state" / "manifest.ocdbt").unlink()


@pytest.mark.parametrize(("damage", "reason"), [
    (damage_truncate, 'error reading "params.w/0.0"'),
    (damage_garbled_metadata, "its metadata cannot be read: expecting property name"),
    (damage_missing_data_item, 'item "data" was not found in the checkpoint'),
    (damage_missing_manifest, "does not exist"),
])
def test_a_damaged_latest_checkpoint_is_quarantined_and_the_previous_one_used(tmp_path, damage,
                                                                              reason):
    directory = tmp_path / "checkpoints"
    checkpointer = Checkpointer(directory, keep=3)
    saved_steps(checkpointer, 4, 8)
    damage(directory / "8")
    damaged_files = listing(directory / "8")
    with pytest.warns(UserWarning, match="the checkpoint of step 8 is damaged") as caught:
        step, state, data = checkpointer.restore_latest(abstract(make_state(0)))
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert step == 4 and data == {"position": 4} and tree_equal(state, make_state(4))

    (moved,) = (directory / "quarantine").iterdir()
    assert moved.name.startswith("8-") and str(moved) in str(caught[0].message)
    assert listing(moved) == sorted([*damaged_files, "REASON.txt"])
    written, warned = (moved / "REASON.txt").read_text(), str(caught[0].message)
    assert written.startswith("step 8: ") and reason in written.splitlines()[0].lower()
    assert reason in warned.lower()
    assert "<bound method" not in written + warned and "tensorstore_spec" not in written + warned
    assert checkpointer.all_steps() == [4]
    saved_steps(checkpointer, 8, 12, 16)  # the run goes on; keep=3 never touches the quarantine
    assert checkpointer.all_steps() == [8, 12, 16]
    assert listing(moved) == sorted([*damaged_files, "REASON.txt"])
    checkpointer.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"params": {"w": jax.ShapeDtypeStruct((64, 32), jnp.float32)}},
         "'params/w' is (64, 64) in the checkpoint but (64, 32) in the config"),
        ({"params": {"extra": jax.ShapeDtypeStruct((2,), jnp.float32)}},
         "the config has 'params/extra', the checkpoint does not"),
    ],
)
def test_a_structure_mismatch_is_a_config_error_and_nothing_is_moved(tmp_path, change, message):
    directory = tmp_path / "checkpoints"
    checkpointer = Checkpointer(directory, keep=3)
    saved_steps(checkpointer, 4, 8)
    before = listing(directory)
    target = abstract(make_state(0))
    target["params"].update(change["params"])
    with pytest.raises(CheckpointError) as err:
        checkpointer.restore_latest(target)
    text = str(err.value)
    assert message in text and "config mismatch" in text and "step 8" in text and "\n" not in text
    assert listing(directory) == before and checkpointer.all_steps() == [4, 8]
    checkpointer.close()


def test_a_save_in_flight_is_not_a_step_until_it_committed(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep=3)
    saved_steps(checkpointer, 4)
    checkpointer.save(8, make_state(8, width=512), {"position": 8})
    assert checkpointer.latest_step() == 4 and checkpointer.all_steps() == [4]
    checkpointer.wait()
    assert checkpointer.latest_step() == 8 and checkpointer.all_steps() == [4, 8]
    checkpointer.close()


def test_a_leftover_temporary_directory_is_never_a_step(tmp_path, monkeypatch):
    """A save killed before its commit leaves `<step>.orbax-checkpoint-tmp-*`; one orbax
    (jax 0.11.2, under load) once listed such a step. Made here by hand: a complete copy of
    step 8 under a temporary name, which orbax is then made to list as step 12."""
    directory = tmp_path / "checkpoints"
    checkpointer = Checkpointer(directory, keep=3)
    saved_steps(checkpointer, 4, 8)
    shutil.copytree(directory / "8", directory / "12.orbax-checkpoint-tmp-1765000000")
    listed = checkpointer.manager.all_steps
    monkeypatch.setattr(checkpointer.manager, "all_steps", lambda *a, **k: [*listed(*a, **k), 12])
    assert checkpointer.all_steps() == [4, 8] and checkpointer.latest_step() == 8
    step, _, data = checkpointer.restore_latest(abstract(make_state(0)))
    assert (step, data) == (8, {"position": 8})
    with pytest.raises(CheckpointError, match=r"no checkpoint of step 12 .* choose one of \[4, 8\]"):
        checkpointer.restore(12, abstract(make_state(0)))
    checkpointer.close()


@pytest.mark.smoke
def test_restore_of_a_chosen_step_and_of_a_missing_one(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints", keep=3)
    saved_steps(checkpointer, 4, 8)
    state, data = checkpointer.restore(4, abstract(make_state(0)))
    assert data == {"position": 4} and tree_equal(state, make_state(4))
    with pytest.raises(CheckpointError, match=r"no checkpoint of step 6 .* choose one of \[4, 8\]"):
        checkpointer.restore(6, abstract(make_state(0)))
    checkpointer.close()


def test_a_failed_async_save_raises_one_line_at_wait_and_keeps_the_previous_latest(
        tmp_path, capfd):
    """A real write failure: the file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes the
    kernel refuse writes past 64 kB with EFBIG while orbax writes the ~1 MB state."""
    directory = tmp_path / "checkpoints"
    checkpointer = Checkpointer(directory, keep=2)
    saved_steps(checkpointer, 4, 8)
    capfd.readouterr()
    big = make_state(12, width=512)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, hard))
    try:
        checkpointer.save(12, big, {"position": 12})  # returns: the failure is in the background
        with pytest.raises(CheckpointError) as err:
            checkpointer.wait()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    text = str(err.value)
    assert "\n" not in text and "step 12" in text and str(directory) in text
    needed = sum(x.nbytes for x in jax.tree.leaves(big)) / 1e6
    assert "file size limit" in text and f"the state needs about {needed:.1f} MB" in text
    assert "the latest checkpoint is still step 8" in text
    assert "Traceback" not in capfd.readouterr().err
    assert checkpointer.all_steps() == [4, 8]  # keep=2 did not count the failed step
    checkpointer.close()
    reopened = Checkpointer(directory, keep=2)
    step, state, _ = reopened.restore_latest(abstract(make_state(0)))
    assert step == 8 and tree_equal(state, make_state(8))
    reopened.close()
    assert sorted(p.name for p in directory.iterdir()) == ["4", "8"]


FULL_DISK = textwrap.dedent("""
    import sys
    import jax
    from lmjax.errors import CheckpointError
    from lmjax.train.checkpoint import Checkpointer
    state = lambda seed: {"w": jax.random.normal(jax.random.key(seed), (256, 256))}
    checkpointer = Checkpointer(sys.argv[1], keep=5)
    checkpointer.save(1, state(1), {"position": 1})
    checkpointer.wait()
    checkpointer.save(2, state(2), {"position": 2})
    try:
        checkpointer.close()
    except CheckpointError as err:
        print(err)
    print(Checkpointer(sys.argv[1], keep=5).all_steps())
""")


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_a_full_disk_names_the_space_needed_and_found(tmp_path):
    """A real ENOSPC: a 400 kB tmpfs mounted in an unprivileged user and mount namespace holds
    one 262 kB checkpoint but not a second."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    script = (f"mount -t tmpfs -o size=400k tmpfs {mount} && "
              f"exec {sys.executable} -c '{FULL_DISK}' {mount / 'checkpoints'}")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                            text=True, timeout=240)
    if result.returncode != 0 and "unshare" in result.stderr:
        pytest.skip(f"user namespaces are not permitted here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr[-3000:]
    message, steps = result.stdout.splitlines()
    assert message.startswith(f"saving the checkpoint of step 2 to {mount / 'checkpoints'} "
                              "failed: no space left on device (the state needs about 0.3 MB, ")
    free_mb = float(message.split("MB, ")[1].split(" MB free")[0])
    assert 0 <= free_mb < 0.3 and "the latest checkpoint is still step 1" in message
    assert steps == "[1]" and "Traceback" not in result.stderr


@pytest.mark.smoke
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    """End to end through `lmjax train`: the damaged step is quarantined, the run resumes from
    the one before and logs the same losses as the first run."""
    args = ["train", "--config", "gpt_tiny", f"run_dir={tmp_path}", "train.log_every=1",
            "checkpoint.every=4", "checkpoint.keep=3", "train.eval_every=1000", "train.steps=8"]
    assert cli.main(args) == 0
    first_run = {r["step"]: r["loss"] for r in read_metrics(tmp_path)}
    truncate_largest_file(tmp_path / "checkpoints" / "8")
    with pytest.warns(UserWarning, match="the checkpoint of step 8 is damaged"):
        assert cli.main(args) == 0
    again = {r["step"]: r["loss"] for r in read_metrics(tmp_path)}
    assert sorted(again) == list(range(1, 9))
    assert again == first_run
    (moved,) = (tmp_path / "checkpoints" / "quarantine").iterdir()
    assert moved.name.startswith("8-") and (moved / "REASON.txt").is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["4", "8", "quarantine"]
    assert json.loads((tmp_path / "checkpoints" / "8" / "data" / "metadata").read_text())
