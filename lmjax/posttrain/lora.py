"""LoRA (Hu et al. 2021): low-rank adapters on the attention and MLP projection kernels, as
a transform of the parameters: a kernel W becomes W + (α/r)·A·B, with A (in × r) random and
B (r × out) zero, so training starts from the base model. Only adapters train: the trained
tree is {"base", "lora"} and `optax.multi_transform` sends the base's updates to zero (its
gradient is also stopped, so none is computed). `merge` folds adapters into the kernels for
inference, `unmerge` takes them out again, and adapters are saved alone.

Kernels of lmjax's `Dense` may have several input or output dimensions ((embed, heads, kv)
for a query projection, (heads, kv, embed) for the attention output); an adapter sees a
kernel as the matrix (product of input dims) × (product of output dims). On a mesh
(`lmjax.posttrain.placement`) the base keeps its sharding and each adapter is sharded like the
kernel it adapts (`adapter_names`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from lmjax.errors import ConfigError, DataError
from lmjax.train.state import count_params

PROJECTIONS = ("query", "key", "value", "out", "wi", "wi_up", "wo")
INPUT_DIMS = {"out": 2}  # the attention output kernel reads (heads, kv); the others one dim


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    rank: int = 4
    alpha: float = 8.0
    targets: tuple[str, ...] = PROJECTIONS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"LoRA rank={self.rank} must be >= 1")
        unknown = sorted(set(self.targets) - set(PROJECTIONS))
        if unknown:
            raise ConfigError(f"LoRA targets {unknown} are not projections: choose among {PROJECTIONS}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def _matrix_shape(path: tuple[str, ...], kernel_shape: tuple[int, ...]) -> tuple[int, int]:
    n_in = INPUT_DIMS.get(path[-2], 1)
    return math.prod(kernel_shape[:n_in]), math.prod(kernel_shape[n_in:])


def _targets(params: Any, config: LoraConfig) -> dict[tuple[str, ...], jax.Array]:
    flat = traverse_util.flatten_dict(params)
    found = {path: kernel for path, kernel in flat.items()
             if path[-1] == "kernel" and len(path) >= 2 and path[-2] in config.targets}
    if not found:
        raise ConfigError(f"the model has no projection kernels named {config.targets} for LoRA")
    return found


def init_adapters(params: Any, config: LoraConfig) -> dict:
    """A (in × r, Kaiming-uniform-like scale 1/sqrt(in)) and B (r × out, zeros) for every
    targeted kernel; one-line ConfigError when the rank exceeds a layer's dimensions."""
    adapters, key = {}, jax.random.key(config.seed)
    for index, (path, kernel) in enumerate(sorted(_targets(params, config).items())):
        n_in, n_out = _matrix_shape(path, kernel.shape)
        if config.rank > min(n_in, n_out):
            raise ConfigError(
                f"LoRA rank {config.rank} exceeds layer {'/'.join(path[:-1])} ({n_in} -> {n_out}): "
                f"use a rank of at most {min(n_in, n_out)}"
            )
        a = jax.random.normal(jax.random.fold_in(key, index), (n_in, config.rank)) / math.sqrt(n_in)
        adapters[path[:-1]] = {"a": a, "b": jnp.zeros((config.rank, n_out))}
    return traverse_util.unflatten_dict({(*path, name): value for path, pair in adapters.items()
                                         for name, value in pair.items()})


def _delta(path: tuple[str, ...], kernel: jax.Array, adapters_flat: dict, scale: float) -> jax.Array:
    a, b = adapters_flat[(*path[:-1], "a")], adapters_flat[(*path[:-1], "b")]
    return (scale * (a @ b)).reshape(kernel.shape).astype(kernel.dtype)


def _shift(params: Any, adapters: dict, config: LoraConfig, sign: float) -> Any:
    flat = traverse_util.flatten_dict(params)
    adapters_flat = traverse_util.flatten_dict(adapters)
    for path in _targets(params, config):
        flat[path] = flat[path] + sign * _delta(path, flat[path], adapters_flat, config.scale)
    return traverse_util.unflatten_dict(flat)


def adapter_names(param_names: Any, config: LoraConfig) -> dict:
    """Logical axes of every adapter: A (in × r) takes its kernel's leading input axis, B
    (r × out) its leading output axis, the rank axis none. A flattened dimension split into
    blocks is split by whole slices of the axis it starts with, so A·B comes out sharded as
    the kernel is and merging moves no data between devices."""
    names = {}
    for path, axes in traverse_util.flatten_dict(param_names).items():
        if path[-1] == "kernel" and len(path) >= 2 and path[-2] in config.targets:
            names[(*path[:-1], "a")] = (axes[0], None)
            names[(*path[:-1], "b")] = (None, axes[INPUT_DIMS.get(path[-2], 1)])
    return traverse_util.unflatten_dict(names)


def merge(params: Any, adapters: dict, config: LoraConfig) -> Any:
    """Parameters with every adapted kernel replaced by W + (α/r)·A·B."""
    return _shift(params, adapters, config, 1.0)


def unmerge(merged: Any, adapters: dict, config: LoraConfig) -> Any:
    """The base parameters back from merged ones."""
    return _shift(merged, adapters, config, -1.0)


class LoraTuning:
    """The `Tuning` (lmjax.posttrain.tuning) that trains adapters only."""

    def __init__(self, config: LoraConfig) -> None:
        self.config = config

    def init(self, params: Any) -> dict:
        return {"base": params, "lora": init_adapters(params, self.config)}

    def names(self, param_names: Any) -> dict:
        return {"base": param_names, "lora": adapter_names(param_names, self.config)}

    def model_params(self, trained: dict) -> Any:
        return merge(jax.lax.stop_gradient(trained["base"]), trained["lora"], self.config)

    def optimizer(self, base: optax.GradientTransformation, trained: dict) -> optax.GradientTransformation:
        labels = {"base": jax.tree.map(lambda _: "frozen", trained["base"]),
                  "lora": jax.tree.map(lambda _: "adapter", trained["lora"])}
        return optax.multi_transform({"adapter": base, "frozen": optax.set_to_zero()}, labels)

    def merged(self, trained: dict) -> Any:
        return merge(trained["base"], trained["lora"], self.config)

    def trainable_count(self, trained: dict) -> int:
        return count_params(trained["lora"])


def save_adapters(directory: str | pathlib.Path, adapters: dict, config: LoraConfig) -> pathlib.Path:
    """adapters.npz (one array per 'path/a', 'path/b') and lora.json: the adapters alone."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    flat = traverse_util.flatten_dict(adapters, sep="/")
    np.savez(directory / "adapters.npz", **{k: np.asarray(v) for k, v in flat.items()})
    (directory / "lora.json").write_text(json.dumps(dataclasses.asdict(config)))
    return directory


def load_adapters(directory: str | pathlib.Path) -> tuple[dict, LoraConfig]:
    directory = pathlib.Path(directory)
    if not (directory / "lora.json").is_file() or not (directory / "adapters.npz").is_file():
        raise DataError(f"{directory} holds no LoRA adapters (adapters.npz and lora.json): "
                        "give the directory save_adapters wrote")
    meta = json.loads((directory / "lora.json").read_text())
    config = LoraConfig(**{**meta, "targets": tuple(meta["targets"])})
    with np.load(directory / "adapters.npz") as stored:
        flat = {key: jnp.asarray(stored[key]) for key in stored.files}
    return traverse_util.unflatten_dict(flat, sep="/"), config
