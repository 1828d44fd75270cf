"""Device mesh, logical-axis sharding rules and multi-host start-up.

The mesh has three axes: `data` (pure data parallelism), `fsdp` (data parallelism that also
shards parameters and optimizer state) and `tensor` (Megatron-style model parallelism). Models
name their dimensions logically (batch, embed, heads, ...); `MeshConfig.axis_rules`, plain data
in the config, maps those names to mesh axes. Nothing else in lmjax knows the mesh.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from lmjax import multihost
from lmjax.config import MeshConfig, mesh_axis_sizes
from lmjax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

Rules = tuple[tuple[str, Any], ...]


def initialize_distributed(mesh_config: MeshConfig) -> None:
    """Joins a multi-host job before JAX touches a device.

    On a multi-host TPU slice JAX discovers its peers itself (`lmjax.multihost` decides that
    there are peers exactly as JAX's cluster detection does), and the job must then span every
    host of the slice; elsewhere (GPU clusters, several CPU processes) the config names the
    coordinator, the process count and this process's id.
    """
    tpu_slice = None if mesh_config.num_processes > 1 else multihost.detect_tpu_slice()
    if not jax.distributed.is_initialized():
        _join(mesh_config, tpu_slice)
    if tpu_slice is not None and tpu_slice.multi_host:
        multihost.check_processes(tpu_slice, jax.process_count())


def _join(mesh_config: MeshConfig, tpu_slice: multihost.TpuSlice | None) -> None:
    if mesh_config.num_processes > 1:
        if not mesh_config.coordinator_address:
            raise ConfigError(
                "mesh.num_processes > 1 needs mesh.coordinator_address=HOST:PORT of process 0"
            )
        if not 0 <= mesh_config.process_id < mesh_config.num_processes:
            raise ConfigError(
                f"mesh.process_id={mesh_config.process_id} must lie in "
                f"[0, mesh.num_processes={mesh_config.num_processes})"
            )
        jax.distributed.initialize(
            coordinator_address=mesh_config.coordinator_address,
            num_processes=mesh_config.num_processes,
            process_id=mesh_config.process_id,
        )
    elif tpu_slice is not None and tpu_slice.multi_host:
        jax.distributed.initialize()


def mesh_shape(mesh_config: MeshConfig, device_count: int) -> tuple[int, int, int]:
    """Axis sizes with a -1 filled in; the product must equal the device count."""
    return tuple(mesh_axis_sizes(mesh_config, device_count).values())


def make_mesh(mesh_config: MeshConfig, devices: list | None = None) -> Mesh:
    devices = devices if devices is not None else jax.devices()
    shape = mesh_shape(mesh_config, len(devices))
    return jax.make_mesh(
        shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices
    )


def axis_rules(mesh_config: MeshConfig) -> Rules:
    """The config's rule table in the hashable form flax expects."""
    return tuple(
        (name, tuple(axes) if isinstance(axes, (list, tuple)) else axes)
        for name, axes in mesh_config.axis_rules
    )


@contextmanager
def activate(mesh: Mesh, rules: Rules) -> Iterator[None]:
    """Makes the mesh and rules current, so logical constraints in models take effect."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def logical_shardings(logical_specs: Any, mesh: Mesh, rules: Rules) -> Any:
    """NamedShardings for a pytree of logical PartitionSpecs (from `nn.get_partition_spec`)."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape["data"] * mesh.shape["fsdp"]


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """One global array per field from each host's own rows of the batch."""
    sharding = batch_sharding(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in local_batch.items()
    }
