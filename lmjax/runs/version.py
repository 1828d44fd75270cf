"""Which lmjax wrote a run directory, and whether this lmjax can read it.

`lmjax_version` holds `{"lmjax": "<package version>", "format": RUN_FORMAT}` as JSON. The
rule is on the run-directory format alone: a run opens when its format equals this lmjax's
`RUN_FORMAT`, whatever the package versions, because releases that do not change what the
directory holds (file names, the checkpoint's tree, config keys that keep their meaning)
keep the format. A change that older readers would misread raises `RUN_FORMAT`. Runs
written before the file existed have none and are format 1.
"""

from __future__ import annotations

import importlib.metadata
import json

from lmjax.errors import CheckpointError
from lmjax.runs.layout import RunLayout

RUN_FORMAT = 1
UNVERSIONED_FORMAT = 1  # runs written before lmjax_version existed


def package_version() -> str:
    """The installed lmjax's version ("unknown" when run from a tree that is not installed)."""
    try:
        return importlib.metadata.version("lmjax")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def write_version(layout: RunLayout) -> None:
    """Records this lmjax's version and run format; the trainer and exports call it once the
    run directory is known to be theirs."""
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.version.write_text(json.dumps({"lmjax": package_version(), "format": RUN_FORMAT}) + "\n")


def check_version(layout: RunLayout) -> int:
    """The run's format, or a one-line CheckpointError when this lmjax cannot read it."""
    if not layout.version.exists():
        return UNVERSIONED_FORMAT
    try:
        record = json.loads(layout.version.read_text())
        written_by, run_format = str(record["lmjax"]), int(record["format"])
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(
            f"{layout.version} is not an lmjax version record ({{\"lmjax\": ..., \"format\": N}}): "
            "restore the file or remove it if the run was written by an lmjax before it existed"
        ) from None
    if run_format != RUN_FORMAT:
        newer = "a newer" if run_format > RUN_FORMAT else "an older"
        raise CheckpointError(
            f"{layout.root} was written by lmjax {written_by} in run format {run_format}, but this "
            f"lmjax {package_version()} reads format {RUN_FORMAT}: open it with {newer} lmjax "
            f"(pip install lmjax=={written_by})"
        )
    return run_format
