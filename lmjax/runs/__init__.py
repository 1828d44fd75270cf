"""The run directory's one owner: its layout, its version record, opening a run or an import.

`open_run` and the names beside it load jax and the models, so they are imported on first
use: `lmjax.runs.layout` and `lmjax.runs.version` stay cheap for the CLI and the config.
"""

from lmjax.runs.layout import RunLayout, as_path
from lmjax.runs.version import RUN_FORMAT, check_version, write_version

_OPEN_NAMES = ("Located", "Run", "abstract_params", "locate", "open_run")

__all__ = ["RUN_FORMAT", "RunLayout", "as_path", "check_version", "write_version", *_OPEN_NAMES]


def __getattr__(name: str):
    if name in _OPEN_NAMES:
        from lmjax.runs import open as open_module

        return getattr(open_module, name)
    raise AttributeError(f"module 'lmjax.runs' has no attribute {name!r}")
