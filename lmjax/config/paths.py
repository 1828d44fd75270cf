"""Where a config's data and cache live: its own setting, else an environment variable,
else a directory under the home directory."""

from __future__ import annotations

import os
import pathlib

from lmjax.config.schema import DataConfig


def resolve_data_dir(data: DataConfig) -> pathlib.Path:
    return pathlib.Path(
        data.data_dir or os.environ.get("LMJAX_DATA_DIR") or pathlib.Path.home() / "lmjax_data"
    )


def resolve_cache_dir(data: DataConfig) -> pathlib.Path:
    return pathlib.Path(
        data.cache_dir
        or os.environ.get("LMJAX_CACHE_DIR")
        or pathlib.Path.home() / ".cache" / "lmjax"
    )
