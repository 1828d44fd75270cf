"""Post-training on a device mesh: the parameters' logical axis names, and `Placement`, which
puts a trained tree and its batches on the mesh by the same rule table as pretraining
(`lmjax.parallel`), so the forward pass's logical constraints take effect and LoRA adapters
are sharded like the kernels they adapt."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from lmjax import parallel
from lmjax.config import MeshConfig, ModelConfig
from lmjax.models import build_model
from lmjax.runs.open import example_inputs


def logical_names(model_config: ModelConfig) -> Any:
    """Each parameter's logical axis names (a tuple per leaf), computed without allocating."""
    model = build_model(model_config)
    boxed = jax.eval_shape(model.init, jax.random.key(0), **example_inputs(model_config.arch))
    specs = nn.get_partition_spec(boxed)["params"]
    return jax.tree.map(tuple, specs, is_leaf=lambda node: isinstance(node, PartitionSpec))


@dataclasses.dataclass(frozen=True)
class Placement:
    """A mesh and its logical-axis rules; `names` gives the trained tree's logical axes."""

    mesh: Mesh
    rules: parallel.Rules

    @classmethod
    def from_config(cls, mesh_config: MeshConfig, devices: list | None = None) -> Placement:
        return cls(parallel.make_mesh(mesh_config, devices), parallel.axis_rules(mesh_config))

    def shardings(self, names: Any) -> Any:
        """NamedShardings for a tree of logical-name tuples."""
        specs = jax.tree.map(lambda axes: PartitionSpec(*axes), names,
                             is_leaf=lambda node: isinstance(node, tuple))
        return parallel.logical_shardings(specs, self.mesh, self.rules)

    def put(self, tree: Any, names: Any) -> Any:
        return jax.device_put(tree, self.shardings(names))

    def batches(self, batches: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, jax.Array]]:
        """Each batch split over the data-parallel axes (its rows must divide among them)."""
        sharding = parallel.batch_sharding(self.mesh)
        for batch in batches:
            yield jax.device_put(batch, sharding)

    def active(self):
        return parallel.activate(self.mesh, self.rules)


def trained_names(placement: Placement | None, tuning: Any, model: nn.Module) -> Any:
    """The logical names of what `tuning` trains for `model` (None without a placement)."""
    return None if placement is None else tuning.names(logical_names(model.config))
