"""Checks an output directory before the work that fills it starts.

Training a tokenizer or an n-gram model, or running a sweep, can take minutes; finding only
at the end that `--out` is a file, lies under a file or cannot be written wastes them and
ends in a traceback (`FileExistsError`, `NotADirectoryError`, `OSError [Errno 30]`). Each
case is one line here instead, naming the path and what to do. Nothing is created: the
command makes the directory when it saves.
"""

from __future__ import annotations

import os
from pathlib import Path

from lmjax.errors import ConfigError


def check_output_dir(out: str | os.PathLike, label: str = "--out", must_be_empty: bool = False) -> None:
    """Raises ConfigError unless `out` is, or can be made as, a writable directory (and, with
    `must_be_empty`, holds nothing yet). Bucket URLs (`gs://...`) are left to their client."""
    if "://" in os.fspath(out):
        return
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{label} {path} is an existing file: give a directory")
    if must_be_empty and path.is_dir() and any(path.iterdir()):
        raise ConfigError(f"{label} {path} is a directory that is not empty: give a new or empty directory")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise ConfigError(f"{label} {path} lies under the file {existing}: give a directory path")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" (its nearest existing parent {existing} is not)"
        raise ConfigError(f"{label} {path} is not writable{where}: give a writable directory")


def _nearest_existing(path: Path) -> Path:
    """`path` itself or its closest ancestor that exists."""
    absolute = path.absolute()
    for candidate in (absolute, *absolute.parents):
        if candidate.exists():
            return candidate
    return Path(absolute.anchor)
