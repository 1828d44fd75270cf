"""Writing an export's tensors as transformers does: `model.safetensors`, or shards
`model-0000k-of-0000n.safetensors` with `model.safetensors.index.json` when they exceed the
shard size. Tensors are cast to the export's dtype (bfloat16 through ml_dtypes, which
safetensors writes without torch)."""

from __future__ import annotations

import json
import pathlib
import re

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from lmjax.errors import ConfigError

DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # transformers' meanings
SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def numpy_dtype(name: str) -> np.dtype:
    if name not in DTYPES:
        raise ConfigError(f"--dtype {name!r} is not one of {', '.join(DTYPES)}")
    return np.dtype(DTYPES[name])


def parse_size(text: str) -> int:
    """Bytes in '2GB', '500MB', '64KiB' or a bare number of bytes."""
    match = SIZE.fullmatch(str(text))
    unit = match.group(2).upper() if match else None
    if not match or unit not in UNITS or float(match.group(1)) * UNITS[unit] < 1:
        raise ConfigError(f"--shard-size {text!r} is not a size: give a number of bytes with an "
                          "optional unit, e.g. 2GB, 500MB or 64KiB")
    return int(float(match.group(1)) * UNITS[unit])


def shard(tensors: dict[str, np.ndarray], max_bytes: int) -> list[dict[str, np.ndarray]]:
    """Tensors in order, grouped so that no group exceeds `max_bytes` unless one tensor alone
    does (it then gets a shard of its own), as transformers splits them."""
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, value in tensors.items():
        if shards[-1] and size + value.nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = value
        size += value.nbytes
    return shards


def write_weights(tensors: dict[str, np.ndarray], directory: pathlib.Path, dtype: np.dtype,
                  max_bytes: int) -> list[str]:
    """Writes the files into `directory`; returns their names (the index last, if any)."""
    cast = {name: np.ascontiguousarray(value.astype(dtype)) for name, value in tensors.items()}
    shards = shard(cast, max_bytes)
    if len(shards) == 1:
        save_file(cast, directory / SINGLE_FILE, metadata={"format": "pt"})
        return [SINGLE_FILE]
    names = [f"model-{k:05d}-of-{len(shards):05d}.safetensors" for k in range(1, len(shards) + 1)]
    weight_map = {}
    for name, part in zip(names, shards):
        save_file(part, directory / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {"total_size": sum(value.nbytes for value in cast.values())},
             "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return [*names, INDEX_FILE]
