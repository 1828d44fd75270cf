"""What orbax logs and leaves behind, kept off stderr: the Checkpointer reports failures itself.

Orbax reports a failed background save only by logging it (with a traceback) through absl;
`OrbaxErrorCapture` hands the first such error to the Checkpointer, which raises it as one
line. After a failed write orbax also leaves futures and callbacks that Python would report
with tracebacks when they are collected; those two reports are dropped.
"""

from __future__ import annotations

import logging
import sys
import traceback


class OrbaxErrorCapture(logging.Filter):
    """Keeps orbax's logged errors (with their tracebacks) off stderr and hands them to us.

    Orbax reports a failed background save only by logging it; the Checkpointer turns the
    first such error into its one-line `CheckpointError`.
    """

    def __init__(self):
        super().__init__()
        self._captured: BaseException | None = None
        self._logger = logging.getLogger("absl")
        self._logger.addFilter(self)
        _silence_orbax_leftovers()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or "orbax" not in record.pathname:
            return True
        if self._captured is None and record.exc_info and record.exc_info[1] is not None:
            self._captured = record.exc_info[1]
        return False

    def pop(self) -> BaseException | None:
        captured, self._captured = self._captured, None
        return captured

    def remove(self) -> None:
        self._logger.removeFilter(self)


def _silence_orbax_leftovers() -> None:
    """After a failed write, orbax leaves asyncio futures whose errors nobody retrieves and
    tensorstore callbacks that reach its closed event loop; Python reports both with tracebacks
    when they are collected, possibly after the Checkpointer closed. Installed once per process,
    dropping only those two reports, and only for futures that ran orbax code or wrote into
    orbax's temporary checkpoint directories."""
    previous = sys.unraisablehook
    if getattr(previous, "lmjax_silences_orbax", False):
        return

    def hook(unraisable) -> None:
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        previous(unraisable)

    hook.lmjax_silences_orbax = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_drop_unretrieved_orbax_errors)


def _drop_unretrieved_orbax_errors(record: logging.LogRecord) -> bool:
    if "never retrieved" not in str(record.msg) or not record.exc_info:
        return True
    frames = traceback.extract_tb(record.exc_info[2])
    written_by_orbax = "orbax-checkpoint-tmp" in str(record.exc_info[1])
    return not (written_by_orbax or any("orbax" in frame.filename for frame in frames))
