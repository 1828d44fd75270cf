"""Where each tensor of a `save_pretrained` directory lies, found without reading any data.

A safetensors file starts with a little-endian u64 header length and a JSON header giving
each tensor's dtype, shape and byte range; `TensorRef` keeps that and reads the bytes only
when asked, so a large checkpoint is read one tensor at a time (onto a mesh, `Deferred`)
instead of all at once. Sharded checkpoints (`model-0000k-of-0000n.safetensors` with
`model.safetensors.index.json`) are checked against their index before anything is read:
every shard the index names must exist, and every tensor must lie in exactly the shard the
index names. bfloat16 is read as JAX's numpy dtype for it (numpy has none) and widened to float32.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import struct

import jax.numpy as jnp
import numpy as np

from lmjax.errors import CheckpointError

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
TORCH_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
          "BF16": np.dtype(jnp.bfloat16), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
          "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?")}
HEADER_LENGTH_BYTES = 8
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


@dataclasses.dataclass(frozen=True)
class TensorRef:
    """One tensor of a safetensors file: its place in the file, read on demand."""

    path: pathlib.Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int

    def read(self) -> np.ndarray:
        """The tensor as float32 (what lmjax's parameters are)."""
        with self.path.open("rb") as stream:
            stream.seek(self.start)
            raw = stream.read(self.end - self.start)
        return np.frombuffer(raw, DTYPES[self.dtype]).reshape(self.shape).astype(np.float32)


def weight_files(directory: pathlib.Path) -> list[pathlib.Path]:
    """The checkpoint's weight files: one file, or every shard its index names (all present)."""
    for single, index in (SAFETENSORS, TORCH_FILES):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            files = sorted(set(read_index(directory / index).values()))
            for name in files:
                if not (directory / name).is_file():
                    raise CheckpointError(f"{directory / index} names the shard {name}, which is not in "
                                          f"{directory}: copy every shard of the checkpoint")
            return [directory / name for name in files]
    raise CheckpointError(
        f"{directory} holds no model.safetensors or pytorch_model.bin (nor a sharded index): "
        "save the model with save_pretrained"
    )


def read_index(path: pathlib.Path) -> dict[str, str]:
    """An index's weight_map: tensor name -> shard file name."""
    try:
        weight_map = json.loads(path.read_text()).get("weight_map")
    except (json.JSONDecodeError, AttributeError) as err:
        raise CheckpointError(f"{path} is not a transformers shard index ({err})") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{path} has no weight_map naming the shards: it is not a shard index")
    return weight_map


def safetensors_tensors(files: list[pathlib.Path], index: pathlib.Path | None) -> dict[str, TensorRef]:
    """Every tensor of the files, by name; each must be in one file only (and where `index` says)."""
    tensors: dict[str, TensorRef] = {}
    for path in files:
        for name, ref in read_header(path).items():
            if name in tensors:
                raise CheckpointError(f"tensor {name!r} is in both {tensors[name].path.name} and "
                                      f"{path.name} in {path.parent}: the shards come from different "
                                      "checkpoints")
            tensors[name] = ref
    if index is not None:
        _check_index(index, tensors)
    return tensors


def _check_index(index: pathlib.Path, tensors: dict[str, TensorRef]) -> None:
    for name, shard in read_index(index).items():
        found = tensors.get(name)
        if found is None or found.path.name != shard:
            where = "no shard" if found is None else found.path.name
            raise CheckpointError(f"{index} puts tensor {name!r} in {shard}, but {where} holds it: "
                                  "the shards and their index do not match")


def read_header(path: pathlib.Path) -> dict[str, TensorRef]:
    """The tensors a safetensors file declares, checked against the file's size."""
    size = path.stat().st_size
    try:
        with path.open("rb") as stream:
            (length,) = struct.unpack("<Q", stream.read(HEADER_LENGTH_BYTES))
            if length > min(MAX_HEADER_BYTES, size - HEADER_LENGTH_BYTES):
                raise ValueError(f"a header of {length} bytes")
            header = json.loads(stream.read(length))
        data_start = HEADER_LENGTH_BYTES + length
        refs = {name: _tensor_ref(path, entry, data_start, size)
                for name, entry in header.items() if name != "__metadata__"}
    except (struct.error, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    return refs


def _tensor_ref(path: pathlib.Path, entry: dict, data_start: int, size: int) -> TensorRef:
    dtype, shape = entry["dtype"], tuple(int(n) for n in entry["shape"])
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype} is not one lmjax reads")
    begin, end = (data_start + int(offset) for offset in entry["data_offsets"])
    if end > size or end - begin != DTYPES[dtype].itemsize * int(np.prod(shape)):
        raise ValueError(f"a tensor of shape {shape} at bytes {begin}..{end} of a {size}-byte file")
    return TensorRef(path, dtype, shape, begin, end)
