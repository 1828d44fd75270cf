"""Reading a Hugging Face `save_pretrained` directory: its config.json and its tensors.

Tensors come from safetensors (read without torch) or from a PyTorch state dict loaded with
`weights_only=True`, never plain pickle, which could run arbitrary code. Every tensor is
fetched with the shape its config implies, so weights that belong to another config fail
with a one-line error naming the tensor instead of a reshape error deep in the mapping.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Sequence

import numpy as np

from lmjax.errors import CheckpointError

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
TORCH_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
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


class Weights:
    """A checkpoint's tensors by name, as float32 numpy arrays, fetched with checked shapes."""

    def __init__(self, tensors: dict[str, np.ndarray], where: pathlib.Path):
        self.tensors = tensors
        self.where = where

    def has(self, name: str) -> bool:
        return name in self.tensors

    def get(self, name: str, shape: Sequence[int]) -> np.ndarray:
        if name not in self.tensors:
            raise CheckpointError(f"{self.where} has no weight {name!r}: is it a checkpoint of the model "
                                  "type its config.json names?")
        value = self.tensors[name]
        if value.shape != tuple(shape):
            raise CheckpointError(
                f"weight {name!r} in {self.where} has shape {value.shape} but config.json implies "
                f"{tuple(shape)}: the weights do not match their config"
            )
        return value

    def linear(self, name: str, in_shape: Sequence[int], out_shape: Sequence[int]) -> np.ndarray:
        """A torch Linear weight (out, in) as a kernel (*in_shape, *out_shape)."""
        weight = self.get(name, (math.prod(out_shape), math.prod(in_shape)))
        return weight.T.reshape(*in_shape, *out_shape)

    def vector(self, name: str, shape: Sequence[int]) -> np.ndarray:
        """A bias or norm scale (n,) reshaped to `shape` (e.g. heads × head size)."""
        return self.get(name, (math.prod(shape),)).reshape(shape)

    def same(self, name_a: str, name_b: str) -> bool:
        """Whether two tensors (say an output layer and the embedding) hold equal values."""
        a, b = self.tensors.get(name_a), self.tensors.get(name_b)
        return a is not None and b is not None and a.shape == b.shape and bool(np.array_equal(a, b))


def read_weights(directory: pathlib.Path, strip_prefix: str = "") -> Weights:
    """All tensors of the checkpoint, with `strip_prefix` removed where names carry it."""
    tensors: dict[str, np.ndarray] = {}
    for path in _weight_files(directory):
        tensors.update(_read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path))
    return Weights({_normalise(name, strip_prefix): value for name, value in tensors.items()},
                   directory)


def _normalise(name: str, strip_prefix: str) -> str:
    if strip_prefix and name.startswith(strip_prefix):
        name = name[len(strip_prefix):]
    for old, new in LEGACY_SUFFIXES.items():
        if name.endswith(old):
            name = name[: -len(old)] + new
    return name


def _weight_files(directory: pathlib.Path) -> list[pathlib.Path]:
    for single, index in (SAFETENSORS, TORCH_FILES):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            weight_map = json.loads((directory / index).read_text()).get("weight_map", {})
            return [directory / name for name in sorted(set(weight_map.values()))]
    raise CheckpointError(
        f"{directory} holds no model.safetensors or pytorch_model.bin (nor a sharded index): "
        "save the model with save_pretrained"
    )


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Through the flax backend, which also reads bfloat16 (numpy has no such dtype)."""
    from safetensors.flax import load_file

    try:
        return {name: np.asarray(value, np.float32) for name, value in load_file(path).items()}
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None


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
