"""User-facing errors and warnings: the CLI prints each as one line, without a traceback."""

import contextlib
import warnings
from typing import Iterator


class LmjaxError(ValueError):
    """Something the user asked for is wrong; the message says what and how to fix it."""


class ConfigError(LmjaxError):
    """A config value, key or combination is invalid."""


class DataError(LmjaxError):
    """A corpus, tokenizer or data file is missing, empty or malformed."""


class CheckpointError(LmjaxError):
    """A checkpoint or run directory cannot be used."""


class TrainingDiverged(LmjaxError):
    """The loss became NaN or Inf."""


class LmjaxWarning(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints it as one
    line (`lmjax <command>: warning: ...`), without Python's source line."""


@contextlib.contextmanager
def one_line_warnings(prefix: str) -> Iterator[None]:
    """Within the block, an `LmjaxWarning` prints as `<prefix>: warning: <message>`; other
    libraries' warnings keep Python's format."""
    python_format = warnings.formatwarning

    def formatted(message, category, filename, lineno, line=None) -> str:
        if issubclass(category, LmjaxWarning):
            return f"{prefix}: warning: {message}\n"
        return python_format(message, category, filename, lineno, line)

    warnings.formatwarning = formatted
    try:
        yield
    finally:
        warnings.formatwarning = python_format
