"""Checkpoints with orbax: train state plus the data iterator's position, saved together.

What this module promises (docs/reliability.md):

- A checkpoint is only ever deleted by the keep-last-K rule, and only after a newer save is
  verified on disk. Orbax's own `max_to_keep` is not used: when a save fails in its background
  thread orbax logs the error, still counts the unfinished step and deletes older, good ones.
- A checkpoint whose files are proven damaged (its metadata cannot be read, or reading its
  arrays fails) is moved to `checkpoints/quarantine/<step>-<time>/` with a REASON.txt and the
  previous one is used. A checkpoint whose saved tree differs from the state the config builds
  is a config mismatch: a one-line `CheckpointError`, and nothing is moved.
- A save that fails (full disk, file size limit, permission, a lost bucket) raises a one-line
  `CheckpointError` at the next `save`, `wait` or `close`; orbax writes into a temporary
  directory renamed on commit, so the unfinished step never becomes the latest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from lmjax.errors import CheckpointError, LmjaxWarning
from lmjax.runs.layout import PathLike, RunLayout, as_path
from lmjax.train.orbax_logs import OrbaxErrorCapture

# Messages of errors that prove a checkpoint's files are missing, truncated or unparseable;
# any other restore error (out of memory, a bug) is raised as it is and nothing is moved.
_DAMAGE_MARKERS = (
    "error while reading", "not_found", "does not exist", "no such file", "data_loss",
    "out_of_range", "truncat", "corrupt",
    "was not found in the checkpoint", "unknown key", "expecting value", "expecting property",
    "unexpected end", "unterminated", "checksum", "decode", "failed to read",
)
_DAMAGE_TYPES = (json.JSONDecodeError, UnicodeDecodeError, EOFError, FileNotFoundError)

# What a failed write says, and the one-line explanation lmjax gives for it.
_SAVE_FAILURES = (
    (("no space left", "enospc", "os error 28", "error 28"), "no space left on device"),
    (("file too large", "efbig", "os error 27", "error 27"),
     "a file exceeded the process's file size limit (ulimit -f)"),
    (("quota",), "disk quota exceeded"),
    (("read-only file system", "erofs"), "the file system is read-only"),
    (("permission denied", "permission_denied", "eacces", "access denied", "forbidden"),
     "permission denied"),
    (("not_found", "no such file", "does not exist", "nosuchbucket"),
     "the checkpoint directory (or its bucket) no longer exists"),
)


class Checkpointer:
    """Saves and restores `(state, data_state)` pairs under a run's `checkpoints/` folder.

    `directory` is `RunLayout.checkpoints` (a local path or a bucket URI); damaged checkpoints
    go to the sibling `RunLayout.quarantine`, which orbax never lists as a step.
    """

    def __init__(self, directory: PathLike, keep: int, pinned: tuple[int, ...] = ()):
        self.directory = as_path(directory)
        self.quarantine = RunLayout.at(self.directory.parent).quarantine
        self.keep, self.pinned = keep, frozenset(pinned)  # pinned: checkpoint.keep_steps
        self._errors = OrbaxErrorCapture()
        options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                               cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data"))
        self._in_flight: tuple[int, int] | None = None

    def save(self, step: int, state: Any, data_state: dict) -> None:
        """Starts an asynchronous save, after checking that the previous one committed.

        The data state is the same on every host, so one copy serves.
        """
        self._finish_in_flight()
        self._errors.pop()  # anything orbax logged before this save (a damaged restore) is not its
        n_bytes = _state_bytes(state)
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
                ),
                force=True,
            )
        except Exception as err:
            if not _is_io_error(err):
                raise
            raise self._save_error(step, n_bytes, err) from None
        self._in_flight = (step, n_bytes)

    def latest_step(self) -> int | None:
        """The newest committed step (a save still in flight is not one yet)."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def all_steps(self) -> list[int]:
        """Committed checkpoint steps, oldest first (quarantined and unfinished ones excluded)."""
        in_flight = self._in_flight[0] if self._in_flight else None
        return sorted(step for step in self._listed_steps() if step != in_flight)

    def _listed_steps(self) -> list[int]:
        """orbax's steps that are `<step>/` directories. A leftover `<step>.orbax-checkpoint-tmp*`
        directory is never a step, whatever orbax's version or the timing of its cleanup."""
        names = {path.name for path in self.directory.iterdir()} if self.directory.exists() else set()
        return [step for step in self.manager.all_steps() if str(step) in names]

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """The checkpoint of `step` as (state, data state), for `--restart-from STEP`.

        A damaged one is quarantined and reported: silently using another step would not be
        what was asked for.
        """
        if step not in self.all_steps():
            raise CheckpointError(
                f"there is no checkpoint of step {step} in {self.directory}: "
                f"choose one of {self.all_steps() or 'none (start a new run)'}"
            )
        try:
            return self._restore(step, abstract_state)
        except _Damaged as damage:
            moved_to = self._quarantine(step, damage)
            raise CheckpointError(
                f"the checkpoint of step {step} is damaged ({damage.reason}) and was moved to "
                f"{moved_to}: choose one of {self.all_steps() or 'none (start a new run)'}"
            ) from None

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """The newest readable checkpoint as (step, state, data state), or None if there is none.

        Damaged checkpoints on the way are quarantined with a one-line warning each.
        """
        steps = self.all_steps()
        for step in reversed(steps):
            try:
                state, data_state = self._restore(step, abstract_state)
            except _Damaged as damage:
                moved_to = self._quarantine(step, damage)
                warnings.warn(
                    f"the checkpoint of step {step} is damaged ({damage.reason}); moved it to "
                    f"{moved_to} and falling back to the previous one",
                    LmjaxWarning, stacklevel=2,
                )
                continue
            return step, state, data_state
        if steps:
            raise CheckpointError(
                f"every checkpoint in {self.directory} was damaged and moved to "
                f"{self.quarantine}: run again to start this run afresh from step 0"
            )
        return None

    def wait(self) -> None:
        """Blocks until the save in flight has committed; raises `CheckpointError` if it failed."""
        self._finish_in_flight()

    def close(self) -> None:
        """Waits for the save in flight (raising if it failed) and releases orbax's threads."""
        try:
            self._finish_in_flight()
        finally:
            self.manager.close()
            self._errors.remove()

    def _finish_in_flight(self) -> None:
        """Verifies on disk that the last save committed, then applies the keep-last-K rule."""
        if self._in_flight is None:
            return
        step, n_bytes = self._in_flight
        self._in_flight = None
        error = None
        try:
            self.manager.wait_until_finished()
        except Exception as err:
            error = err
        error = error or self._errors.pop()
        self.manager.reload()
        if step not in self._listed_steps():
            raise self._save_error(step, n_bytes, error)
        if error is not None:
            warnings.warn(f"the checkpoint of step {step} committed, but orbax reported: "
                          f"{_first_line(error)}", LmjaxWarning, stacklevel=3)
        self._keep_last()

    def _keep_last(self) -> None:
        """The keep-last-K rule, pinned steps exempt: the only place a checkpoint is deleted."""
        for step in [s for s in self.all_steps() if s not in self.pinned][: -self.keep]:
            self.manager.delete(step)

    def _save_error(self, step: int, n_bytes: int, error: BaseException | None) -> CheckpointError:
        previous = [s for s in self.all_steps() if s < step]
        resume = (f"the latest checkpoint is still step {previous[-1]}" if previous
                  else "no checkpoint was written yet")
        reason = _save_failure_reason(error)
        if reason in ("no space left on device", "disk quota exceeded",
                      "a file exceeded the process's file size limit (ulimit -f)"):
            reason += f" (the state needs about {_megabytes(n_bytes)}"
            free = _free_bytes(self.directory)
            reason += f", {_megabytes(free)} free there)" if free is not None else ")"
        return CheckpointError(
            f"saving the checkpoint of step {step} to {self.directory} failed: {reason}; "
            f"{resume}: fix this and run the same command again to resume from it"
        )

    def _restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        self._check_structure(step, abstract_state)
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
                ),
            )
        except Exception as err:
            if not _is_damage(err):
                raise
            _quiet_abandoned_reads()
            raise _Damaged.of(err) from err
        return restored["state"], restored["data"]

    def _check_structure(self, step: int, abstract_state: Any) -> None:
        """Compares the saved tree's keys and shapes with the state this config builds."""
        try:
            saved = _saved_shapes(self.directory / str(step) / "state")
        except Exception as err:
            raise _Damaged.of(err, "its metadata cannot be read: ") from err
        if not saved:
            raise _Damaged("its state metadata is missing or unreadable")
        expected = _shapes(abstract_state)
        difference = _first_difference(saved, expected)
        if difference:
            raise CheckpointError(
                f"the checkpoint of step {step} in {self.directory} does not fit this config "
                f"({difference}): this is a config mismatch, not a damaged file; run with the "
                "config the run was started with, or use a new run_dir"
            )

    def _quarantine(self, step: int, damage: _Damaged) -> epath.Path:
        """Moves a damaged step aside (never deletes it), with the reason beside its files."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.quarantine / f"{step}-{stamp}"
        if jax.process_index() == 0:
            self.quarantine.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(target)
            (target / "REASON.txt").write_text(f"step {step}: {damage.reason}\n\n{damage.details}\n")
        self.manager.reload()
        return target


def _quiet_abandoned_reads() -> None:
    """Drops Python's multi-line 'Exception ignored' reports of the array reads a failed restore
    abandons (the damage is in the one-line warning and REASON.txt already), nothing else."""
    previous = sys.unraisablehook
    if getattr(previous, "lmjax_quiet_reads", False):
        return

    def hook(unraisable) -> None:
        code = getattr(unraisable.object, "cr_code", None)
        if getattr(code, "co_name", "") != "_read_array_index_and_device_put":
            previous(unraisable)

    hook.lmjax_quiet_reads = True
    sys.unraisablehook = hook


class _Damaged(Exception):
    """A checkpoint's files are proven unreadable: `reason` says how in one line (for the
    warning), `details` is every error of the chain (for REASON.txt)."""

    def __init__(self, reason: str, details: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.details = details or reason

    @classmethod
    def of(cls, err: BaseException, prefix: str = "") -> _Damaged:
        """The reason is the innermost error (the file and how it failed); orbax's outer
        messages only say which array it was reading."""
        chain = _chain(err)
        details = "\n".join(f"{type(e).__name__}: {_message(e)}" for e in chain)
        return cls(prefix + _first_line(_message(chain[-1]), limit=400), details)


def _saved_shapes(state_dir: epath.Path) -> dict[str, tuple[int, ...]]:
    return _shapes(ocp.StandardCheckpointHandler().metadata(state_dir))


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """Leaf path (as 'a/b/0') -> shape, the same spelling for saved metadata and live states."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_key(path): tuple(getattr(leaf, "shape", ())) for path, leaf in leaves}


def _key(path: tuple) -> str:
    parts = []
    for entry in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                parts.append(str(getattr(entry, attribute)))
                break
    return "/".join(parts)


def _first_difference(saved: dict, expected: dict) -> str | None:
    for key in sorted(set(saved) | set(expected)):
        if key not in saved:
            return f"the config has '{key}', the checkpoint does not"
        if key not in expected:
            return f"the checkpoint has '{key}', the config does not"
        if saved[key] != expected[key]:
            return f"'{key}' is {saved[key]} in the checkpoint but {expected[key]} in the config"
    return None


def _is_damage(err: BaseException) -> bool:
    while err is not None:
        if isinstance(err, _DAMAGE_TYPES):
            return True
        if any(marker in str(err).lower() for marker in _DAMAGE_MARKERS):
            return True
        err = err.__cause__ or err.__context__
    return False


def _is_io_error(err: BaseException) -> bool:
    return isinstance(err, OSError) or _known_save_failure(err) is not None


def _save_failure_reason(error: BaseException | None) -> str:
    if error is None:
        return "the save did not complete (orbax reported no error)"
    return _known_save_failure(error) or _first_line(error)


def _known_save_failure(error: BaseException) -> str | None:
    text = _full_text(error).lower()
    for markers, reason in _SAVE_FAILURES:
        if any(marker in text for marker in markers):
            return reason
    return None


def _full_text(err: BaseException | None) -> str:
    parts = []
    while err is not None and len(parts) < 10:
        parts.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return " | ".join(parts)


def _first_line(err: BaseException | str, limit: int = 200) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return re.sub(r"\s+", " ", line)[:limit]


def _chain(err: BaseException) -> list[BaseException]:
    """The error and its causes, outermost first."""
    chain = [err]
    while (err := err.__cause__ or err.__context__) is not None and len(chain) < 10:
        chain.append(err)
    return chain


def _message(err: BaseException) -> str:
    """The error's text without tensorstore's tails: 'See full TensorStore details: <bound
    method ...>' (a method object, then the whole spec, instead of the details) and
    '[tensorstore_spec=...]'."""
    text = str(err).split(" See full TensorStore details:")[0].split(" [tensorstore_spec=")[0]
    return text.strip() or type(err).__name__


def _state_bytes(state: Any) -> int:
    return int(sum(getattr(leaf, "nbytes", 0) for leaf in jax.tree_util.tree_leaves(state)))


def _free_bytes(directory: epath.Path) -> int | None:
    """Free space on the local file system holding `directory`; None for buckets."""
    if "://" in os.fspath(directory):
        return None
    path = os.fspath(directory)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def is_primary() -> bool:
    return jax.process_index() == 0
