"""Checkpoints with orbax: train state plus the data iterator's position, saved together.

Saving goes through orbax's temporary directories and an atomic rename, so a process killed
mid-save leaves the previous checkpoints intact. A latest checkpoint that cannot be read
(truncated, corrupt) is reported, deleted and skipped in favour of the one before it.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

from lmjax.errors import CheckpointError


class Checkpointer:
    def __init__(self, directory: pathlib.Path, keep: int):
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self.manager = ocp.CheckpointManager(
            pathlib.Path(directory).absolute(), options=options, item_names=("state", "data")
        )

    def save(self, step: int, state: Any, data_state: dict) -> None:
        """Saves asynchronously; the data state is the same on every host, so one copy serves."""
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
            ),
            force=True,
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """The newest readable checkpoint as (step, state, data state), or None if there is none."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
                    ),
                )
            except Exception as err:  # orbax raises many types for damaged files
                reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
                warnings.warn(
                    f"checkpoint at step {step} is unreadable ({reason}); deleting it and falling "
                    "back to the previous one",
                    stacklevel=2,
                )
                self.manager.delete(step)
                continue
            return step, restored["state"], restored["data"]
        if steps:
            raise CheckpointError(
                f"no checkpoint in {self.manager.directory} could be read: remove the directory "
                "to start afresh"
            )
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def is_primary() -> bool:
    return jax.process_index() == 0
