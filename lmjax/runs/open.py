"""`open_run`: any trained or imported model as (config, model, parameters, tokenizer).

One entry point for everything that reads a model: `lmjax generate`, `lmjax convert`, the
evaluation harness, a sweep. It accepts a run directory of `lmjax train` (parameters from the
latest checkpoint), an export of `lmjax convert` (its `params/`), a llama2.c `.bin` file and
a transformers `save_pretrained` directory. `locate` does every check that reads only small
files (what the path is, its version, config and tokenizer), so bad input fails in one line
before parameters are read; `Located.open` then restores them onto a mesh or one device.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.sharding import Mesh, SingleDeviceSharding

from lmjax import parallel, tokenizers
from lmjax import config as config_lib
from lmjax.errors import CheckpointError, DataError
from lmjax.models import build_model
from lmjax.runs import transfer
from lmjax.runs.config_file import read_config
from lmjax.runs.importers import hf, llama2c
from lmjax.runs.importers.config import import_config
from lmjax.runs.importers.hf.tokenizer import read_tokenizer
from lmjax.runs.layout import PathLike, RunLayout, as_path
from lmjax.runs.metrics_file import parse_metrics
from lmjax.runs.params import latest_step, restore_params
from lmjax.runs.version import check_version
from lmjax.tokenizers import SentencePieceTokenizer, Tokenizer

SOURCES = ("run", "export", "llama2c", "hf")
TokenizerLike = Tokenizer | PathLike | None


@dataclasses.dataclass
class Run:
    """An opened model. `step` is the checkpoint's (None for exports and imports); `metrics`
    are the run's metrics.jsonl records; `layout` is None for a llama2.c or transformers file."""

    config: config_lib.Config
    model: nn.Module
    params: Any
    tokenizer: Tokenizer | None
    step: int | None
    metrics: list[dict[str, Any]]
    source: str
    layout: RunLayout | None
    path: epath.Path


@dataclasses.dataclass
class Located:
    """What a path holds, checked but not yet loaded: its source and config, and for imports
    the parameters already read (numpy) with the tokenizer that came with them."""

    source: str
    path: epath.Path
    config: config_lib.Config
    layout: RunLayout | None = None
    imported_params: Any = None
    bundled_tokenizer: Tokenizer | None = None

    def load_tokenizer(self, tokenizer: TokenizerLike = None) -> Tokenizer | None:
        """The given tokenizer (object, saved directory or SentencePiece `.model`), else the
        run's `tokenizer/` or the checkpoint's own; checked against the model's vocabulary."""
        if isinstance(tokenizer, Tokenizer):
            loaded, where = tokenizer, "the given tokenizer"
        elif tokenizer is not None:
            loaded, where = _read_tokenizer(as_path(tokenizer)), str(tokenizer)
        elif self.layout is not None and self.layout.tokenizer.is_dir():
            loaded, where = _read_tokenizer(self.layout.tokenizer), str(self.layout.tokenizer)
        else:
            loaded, where = self.bundled_tokenizer, str(self.path)
        if loaded is not None:
            _check_vocab(loaded, where, self.config.model.vocab_size, exact=self.source == "llama2c")
        return loaded

    def open(self, mesh: Mesh | None = None, *, tokenizer: TokenizerLike = None) -> Run:
        """Restores the parameters onto `mesh` (sharded by their logical names and the config's
        `mesh.axis_rules`) or, without one, onto the first device."""
        loaded_tokenizer = self.load_tokenizer(tokenizer)
        rules = parallel.axis_rules(self.config.mesh)
        abstract = abstract_params(self.config.model, mesh, rules)
        if self.imported_params is not None:
            step, params = None, place_params(self.imported_params, abstract, self.path)
        else:
            step, params = restore_params(self.layout.root, abstract, self.config.model)
        return Run(self.config, build_model(self.config.model), params, loaded_tokenizer, step,
                   read_metrics(self.layout), self.source, self.layout, self.path)


def open_run(path: PathLike, mesh: Mesh | None = None, *, tokenizer: TokenizerLike = None) -> Run:
    """The model at `path` (run, export, llama2.c `.bin` or transformers directory), its
    parameters on `mesh` or one device, and its tokenizer (`tokenizer` overrides the run's)."""
    return locate(path).open(mesh, tokenizer=tokenizer)


def locate(path: PathLike) -> Located:
    """What `path` holds, with its config; one-line CheckpointError when it holds no model."""
    path = as_path(path)
    if not path.exists():
        raise CheckpointError(
            f"{path} does not exist: give a run directory, an export of `lmjax convert`, a llama2.c "
            ".bin file or a transformers save_pretrained directory"
        )
    if not path.is_dir():
        return _locate_llama2c(path)
    layout = RunLayout(path)
    if layout.config.exists():
        return _locate_run(layout)
    if (path / "config.json").exists():
        return _locate_hf(path)
    raise CheckpointError(
        f"{path} is not a run: it lacks config.yaml (and params/ or checkpoints/), and it has no "
        "config.json of a transformers model; give the directory `lmjax train` or `lmjax convert` wrote"
    )


def _locate_run(layout: RunLayout) -> Located:
    check_version(layout)
    config = read_config(layout.root)
    if layout.params.is_dir():
        return Located("export", layout.root, config, layout)
    if latest_step(layout.root) is None:
        raise CheckpointError(
            f"{layout.root} has config.yaml but neither params/ nor a finished checkpoints/<step>/: "
            "train it until a checkpoint is saved (checkpoint.every) or give another run"
        )
    return Located("run", layout.root, config, layout)


def _locate_llama2c(path: epath.Path) -> Located:
    model_config, params = llama2c.load(os.fspath(path))
    return Located("llama2c", path, import_config(model_config, path.stem, None),
                   imported_params=params)


def _locate_hf(path: epath.Path) -> Located:
    directory = transfer.local_dir(path)
    model_config, params = hf.load(directory)
    bundled = read_tokenizer(directory)
    return Located("hf", path, import_config(model_config, path.name, bundled),
                   imported_params=params, bundled_tokenizer=bundled)


def example_inputs(arch: str) -> dict[str, jax.Array]:
    """The smallest inputs that create every parameter of an architecture."""
    ids = jnp.zeros((1, 1), jnp.int32)
    return {"input_ids": ids, "decoder_input_ids": ids} if arch == "t5" else {"input_ids": ids}


def abstract_params(model_config: config_lib.ModelConfig, mesh: Mesh | None = None,
                    rules: parallel.Rules | None = None) -> Any:
    """Parameter ShapeDtypeStructs with shardings, computed without allocating: on `mesh` from
    the parameters' logical names and `rules` (default: the default config's), else on the
    first device. What a restore fills in, and what counts parameters without building them."""
    model = build_model(model_config)

    def init() -> Any:
        return jax.eval_shape(model.init, jax.random.key(0), **example_inputs(model_config.arch))

    if mesh is None:
        boxed = init()["params"]
        device = SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: device, nn.meta.unbox(boxed))
    else:
        rules = rules if rules is not None else parallel.axis_rules(config_lib.MeshConfig())
        with parallel.activate(mesh, rules):
            boxed = init()["params"]
        shardings = parallel.logical_shardings(nn.get_partition_spec(boxed), mesh, rules)
    return jax.tree.map(
        lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
        nn.meta.unbox(boxed), shardings,
    )


def place_params(params: Any, abstract: Any, where: epath.Path) -> Any:
    """Imported (numpy) parameters put onto the shardings of `abstract`, checked leaf by leaf."""
    def place(value: np.ndarray, target: jax.ShapeDtypeStruct) -> jax.Array:
        if value.shape != target.shape:
            raise CheckpointError(f"{where} has a parameter of shape {value.shape} where the model "
                                  f"has {target.shape}: the importer and the model disagree")
        return jax.device_put(np.asarray(value, target.dtype), target.sharding)

    try:
        return jax.tree.map(place, params, abstract)
    except ValueError as err:
        raise CheckpointError(f"{where} holds other parameter names than the model "
                              f"({str(err).splitlines()[0]})") from None


def read_metrics(layout: RunLayout | None) -> list[dict[str, Any]]:
    """The run's metrics.jsonl records in order ([] when it has none; a torn last line, as a
    run still writing it leaves, left out)."""
    return [] if layout is None else parse_metrics(layout.metrics)[0]


def _read_tokenizer(path: epath.Path) -> Tokenizer:
    """A saved tokenizer directory, a model directory with a tokenizer.json, a tokenizer.json
    file (with the tokenizer_config.json beside it) or a SentencePiece `.model` file."""
    if path.is_dir():
        return tokenizers.load(transfer.local_dir(path))
    if path.suffix == ".model" and path.exists():
        return SentencePieceTokenizer.from_file(os.fspath(path))
    if path.suffix == ".json" and path.exists():
        return tokenizers.load(transfer.local_dir(path.parent) / path.name)
    raise DataError(f"tokenizer {path} is neither a tokenizer directory, a tokenizer.json nor a SentencePiece "
                    ".model file")


def _check_vocab(tokenizer: Tokenizer, where: str, model_vocab: int, exact: bool) -> None:
    """llama2.c classifiers have exactly one row per piece; other models may pad their table."""
    if tokenizer.vocab_size > model_vocab or exact and tokenizer.vocab_size != model_vocab:
        raise DataError(
            f"tokenizer {where} has {tokenizer.vocab_size} ids but the model's vocabulary is "
            f"{model_vocab}: give the tokenizer the model was trained with"
        )
