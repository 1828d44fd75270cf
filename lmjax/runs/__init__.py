"""The run directory's one owner: its layout, opening a run or an import, locking it."""

from lmjax.runs.layout import RunLayout, as_path

__all__ = ["RunLayout", "as_path"]
