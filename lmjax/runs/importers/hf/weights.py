"""Reading a Hugging Face `save_pretrained` directory: its config.json and its tensors.

Tensors come from safetensors (located by `shards`, read without torch, one at a time) or
from a PyTorch state dict loaded with `weights_only=True`, never plain pickle, which could run
arbitrary code. Every tensor is
fetched with the shape its config implies, so weights that belong to another config fail
with a one-line error naming the tensor instead of a reshape error deep in the mapping.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from lmjax.errors import CheckpointError
from lmjax.runs.importers.hf.shards import SAFETENSORS, TensorRef, safetensors_tensors, weight_files

# Names that older BERT checkpoints still use for LayerNorm parameters.
LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


def read_config(directory: pathlib.Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{directory} has no config.json: give a directory written by transformers' save_pretrained"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from None


@dataclasses.dataclass(frozen=True)
class Deferred:
    """A parameter read (and transformed) only when numpy asks for it: `open_run` places
    imported parameters leaf by leaf (`np.asarray` then `device_put` onto the mesh), so a
    checkpoint is never held on the host whole."""

    shape: tuple[int, ...]
    read: Callable[[], np.ndarray]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        value = self.read()
        return value if dtype is None else value.astype(dtype, copy=False)


def materialize(tree: Any) -> Any:
    """The same tree with every Deferred leaf read into a numpy array."""
    return jax.tree.map(np.asarray, tree)


class Weights:
    """A checkpoint's tensors by name, read as float32 numpy arrays with checked shapes."""

    def __init__(self, tensors: dict[str, TensorRef | np.ndarray], where: pathlib.Path):
        self.tensors = tensors
        self.where = where

    def has(self, name: str) -> bool:
        return name in self.tensors

    def get(self, name: str, shape: Sequence[int]) -> np.ndarray:
        return self._read(self._checked(name, shape))

    def deferred(self, name: str, shape: Sequence[int], result_shape: Sequence[int],
                 transform: Callable[[np.ndarray], np.ndarray] = lambda value: value) -> Deferred:
        """The tensor `name` (checked to have `shape` now), read and transformed into
        `result_shape` only when placed."""
        found = self._checked(name, shape)
        return Deferred(tuple(result_shape),
                        lambda: np.ascontiguousarray(transform(self._read(found))))

    def _checked(self, name: str, shape: Sequence[int]) -> TensorRef | np.ndarray:
        if name not in self.tensors:
            raise CheckpointError(f"{self.where} has no weight {name!r}: is it a checkpoint of the model "
                                  "type its config.json names?")
        found = self.tensors[name]
        if found.shape != tuple(shape):
            raise CheckpointError(
                f"weight {name!r} in {self.where} has shape {found.shape} but config.json implies "
                f"{tuple(shape)}: the weights do not match their config"
            )
        return found

    @staticmethod
    def _read(found: TensorRef | np.ndarray) -> np.ndarray:
        return found.read() if isinstance(found, TensorRef) else found

    def linear(self, name: str, in_shape: Sequence[int], out_shape: Sequence[int]) -> np.ndarray:
        """A torch Linear weight (out, in) as a kernel (*in_shape, *out_shape)."""
        weight = self.get(name, (math.prod(out_shape), math.prod(in_shape)))
        return weight.T.reshape(*in_shape, *out_shape)

    def vector(self, name: str, shape: Sequence[int]) -> np.ndarray:
        """A bias or norm scale (n,) reshaped to `shape` (e.g. heads × head size)."""
        return self.get(name, (math.prod(shape),)).reshape(shape)

    def same(self, name_a: str, name_b: str) -> bool:
        """Whether two tensors (say an output layer and the embedding) hold equal values."""
        if not (self.has(name_a) and self.has(name_b)):
            return False
        a, b = (self._read(self.tensors[name]) for name in (name_a, name_b))
        return a.shape == b.shape and bool(np.array_equal(a, b))


def read_weights(directory: pathlib.Path, strip_prefix: str = "") -> Weights:
    """All tensors of the checkpoint (safetensors: located, read on demand), with
    `strip_prefix` removed where names carry it."""
    files = weight_files(directory)
    tensors: dict[str, TensorRef | np.ndarray] = {}
    if files[0].suffix == ".safetensors":
        single = files == [directory / SAFETENSORS[0]]
        tensors.update(safetensors_tensors(files, None if single else directory / SAFETENSORS[1]))
    else:
        for path in files:
            tensors.update(_read_torch(path))
    return Weights({_normalise(name, strip_prefix): value for name, value in tensors.items()},
                   directory)


def _normalise(name: str, strip_prefix: str) -> str:
    if strip_prefix and name.startswith(strip_prefix):
        name = name[len(strip_prefix):]
    for old, new in LEGACY_SUFFIXES.items():
        if name.endswith(old):
            name = name[: -len(old)] + new
    return name


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ModuleNotFoundError:
        raise CheckpointError(
            f"reading {path.name} needs torch (pip install 'lmjax[hf]'), or save the model as safetensors"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle and runtime errors for files it refuses
        raise CheckpointError(f"{path} is not a plain PyTorch state dict ({err})") from None
    return {name: value.float().numpy() for name, value in state.items() if torch.is_tensor(value)}
