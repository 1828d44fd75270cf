"""A Hugging Face checkpoint written as an lmjax export: what `lmjax convert from-hf` does
(`convert hf` is its old name).

The export directory holds `config.yaml` (an lmjax Config whose model section is the
checkpoint's architecture), `params/` (a parameters-only checkpoint that
`checkpoint.init_from` and `open_run` read), `lmjax_version` and, where the checkpoint
directory has tokenizer files lmjax can read, `tokenizer/` (which the config names as
data.tokenizer_dir). The checkpoint is read through `lmjax.runs.open.locate`, the same path
`open_run` takes, and the export may be written to a bucket (`gs://...`).
"""

from __future__ import annotations

import os
import tempfile

from etils import epath

from lmjax import config as config_lib
from lmjax.errors import CheckpointError
from lmjax.runs import transfer
from lmjax.runs.config_file import save_config
from lmjax.runs.importers.config import import_config
from lmjax.runs.importers.hf.weights import materialize
from lmjax.runs.layout import PathLike, RunLayout, as_path
from lmjax.runs.lock import check_writable_dir
from lmjax.runs.open import locate
from lmjax.runs.params import save_params
from lmjax.runs.version import write_version


def export(path: PathLike, out_dir: PathLike) -> config_lib.Config:
    """Writes the export into `out_dir`, which must not exist yet or be empty."""
    layout = RunLayout.at(out_dir)
    if layout.root.is_dir() and any(layout.root.iterdir()):
        raise CheckpointError(f"{layout.root} already exists and is not empty: give a new directory")
    source = as_path(path)
    if not (source / "config.json").exists():
        raise CheckpointError(
            f"{source} has no config.json, so it is not a transformers model: give a directory "
            "written by save_pretrained"
        )
    check_writable_dir(layout.root, "OUT_DIR")  # before the weights are read (by `locate`)
    found = locate(source)
    if found.source != "hf":
        raise CheckpointError(
            f"{source} is an lmjax {found.source}, not a transformers model: it needs no conversion"
        )
    tokenizer = found.bundled_tokenizer
    config = import_config(found.config.model, layout.root.name, tokenizer,
                           tokenizer_dir=os.fspath(layout.tokenizer) if tokenizer else "")
    save_params(layout.root, materialize(found.imported_params))
    if tokenizer:
        _save_tokenizer(tokenizer, layout.tokenizer)
    save_config(layout.root, config)
    write_version(layout)
    return config


def _save_tokenizer(tokenizer, target: epath.Path) -> None:
    """Tokenizers write local files; a bucket gets a copy of them."""
    if transfer.is_local(target):
        tokenizer.save(os.fspath(target))
        return
    with tempfile.TemporaryDirectory(prefix="lmjax-") as local:
        transfer.copy_tree(epath.Path(tokenizer.save(local)), target)
