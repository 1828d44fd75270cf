"""Copies between a run directory anywhere (`etils.epath`: local disk or a bucket) and local
disk, for the readers and writers that only know local files (tokenizers, safetensors)."""

from __future__ import annotations

import os
import pathlib
import tempfile

from etils import epath


def is_local(path: epath.Path) -> bool:
    return "://" not in os.fspath(path)


def local_dir(path: epath.Path) -> pathlib.Path:
    """`path` itself when it is on local disk, else a temporary local copy of the directory."""
    if is_local(path):
        return pathlib.Path(path)
    copy = pathlib.Path(tempfile.mkdtemp(prefix="lmjax-"))
    copy_tree(path, epath.Path(copy))
    return copy


def copy_tree(source: epath.Path, target: epath.Path) -> None:
    """Every file under `source` to the same place under `target` (created as needed)."""
    target.mkdir(parents=True, exist_ok=True)
    for child in source.iterdir():
        if child.is_dir():
            copy_tree(child, target / child.name)
        else:
            (target / child.name).write_bytes(child.read_bytes())
