"""`lmjax convert to-hf`: a run, an lmjax export (or anything `open_run` opens) written as a
directory transformers' `from_pretrained` opens without custom code.

Every check that reads no parameters (the options, the output directory, the source, the
model's class, the tokenizer) runs first, so bad input fails in one line with nothing
written. The files are written into a hidden sibling directory that is renamed into place
at the end, so an interrupted export leaves no half-written OUT_DIR. With `overwrite`, an
existing non-empty OUT_DIR is moved aside to `OUT_DIR.replaced-<UTC time>`, never deleted.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import tempfile

import jax
import numpy as np

from lmjax.errors import CheckpointError
from lmjax.models.scan import unstack_layers
from lmjax.runs.exporters import exporter_for
from lmjax.runs.exporters.safetensors_files import numpy_dtype, parse_size, write_weights
from lmjax.runs.exporters.tokenizer_files import unsupported as tokenizer_unsupported
from lmjax.runs.exporters.tokenizer_files import write_tokenizer
from lmjax.runs.layout import PathLike
from lmjax.runs.open import locate
from lmjax.tokenizers import Tokenizer

GENERATION_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


@dataclasses.dataclass
class Exported:
    """What an export wrote: the class, its files, why no tokenizer was written (if not), and
    where a replaced OUT_DIR went."""

    out_dir: pathlib.Path
    hf_class: str
    files: list[str]
    tokenizer_skipped: str | None = None
    moved_aside: pathlib.Path | None = None


def export_to_hf(source: PathLike, out_dir: PathLike, *, dtype: str = "float32",
                 shard_size: str = "2GB", overwrite: bool = False) -> Exported:
    """Writes the transformers export of `source` into `out_dir`."""
    cast_to, max_bytes = numpy_dtype(dtype), parse_size(shard_size)
    if "://" in os.fspath(out_dir):
        raise CheckpointError(f"OUT_DIR {out_dir} is a URI: to-hf writes a local directory (which "
                              "transformers loads); copy it to the bucket afterwards")
    target = pathlib.Path(os.fspath(out_dir)).absolute()
    _check_target(target, overwrite)
    found = locate(source)
    model = found.config.model
    exporter = exporter_for(model)
    tokenizer = found.load_tokenizer()
    skipped = tokenizer_unsupported(tokenizer)
    params = unstack_layers(jax.tree.map(np.asarray, jax.device_get(found.open().params)), model)
    config = _with_token_ids(exporter.hf_config(model), tokenizer) | {"dtype": dtype}
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        files = write_weights(exporter.state_dict(params, model), staging, cast_to, max_bytes)
        files += _write_json(staging, config)
        if skipped is None:
            files += write_tokenizer(tokenizer, staging, model.max_len)
        moved = _replace(target, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # only what this call wrote
        raise
    return Exported(target, config["architectures"][0], files, skipped, moved)


def _check_target(target: pathlib.Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"OUT_DIR {target} is a file: give a directory for the export")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise CheckpointError(f"OUT_DIR {target} is not empty: give a new directory, or "
                              "--overwrite to move its contents aside to OUT_DIR.replaced-<time>")
    if not target.parent.is_dir():
        raise CheckpointError(f"OUT_DIR's parent {target.parent} does not exist: create it first")
    if not os.access(target.parent, os.W_OK):
        raise CheckpointError(f"cannot write in {target.parent}: give OUT_DIR somewhere writable")


def _with_token_ids(config: dict, tokenizer: Tokenizer | None) -> dict:
    """The special ids transformers' generate and padding use (None where the tokenizer has none,
    which also keeps GPT-2's default 50256 out of a smaller vocabulary). A T5 decodes from the
    padding id, as lmjax's span-corruption objective trains it to."""
    ids = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if tokenizer is not None:
        ids = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
               "pad_token_id": tokenizer.pad_id}
        if "decoder_start_token_id" in config and tokenizer.pad_id is not None:
            ids["decoder_start_token_id"] = tokenizer.pad_id
    return {**config, **ids}


def _write_json(directory: pathlib.Path, config: dict) -> list[str]:
    generation = {key: config[key] for key in GENERATION_KEYS if config.get(key) is not None}
    for name, content in (("config.json", config), ("generation_config.json", generation)):
        (directory / name).write_text(json.dumps(content, indent=2) + "\n")
    return ["config.json", "generation_config.json"]


def _replace(target: pathlib.Path, staging: pathlib.Path) -> pathlib.Path | None:
    """Renames the finished export to `target`; a non-empty `target` is moved aside first."""
    moved = None
    if target.is_dir() and any(target.iterdir()):
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        moved = target.with_name(f"{target.name}.replaced-{stamp}")
        target.rename(moved)
    elif target.is_dir():
        target.rmdir()
    staging.chmod(0o755)  # mkdtemp makes it private; an export is meant to be shared
    staging.rename(target)
    return moved

