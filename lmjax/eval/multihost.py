"""Several hosts: process 0 drives the harness, the others follow its batches.

The harness is not deterministic across hosts (document order, few-shot sampling, caches), so
only process 0 runs it. Every jitted scoring call spans the whole mesh, so each batch process
0 builds is broadcast first (a small header with its shapes, then the arrays) and every
process runs the same call; the others loop in `follow` until process 0 sends the end.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

Batch = dict[str, np.ndarray]


def multi_process() -> bool:
    return jax.process_count() > 1


def is_driver() -> bool:
    return jax.process_index() == 0


def _header_size(fields: dict[str, np.dtype]) -> int:
    return 1 + 2 * len(fields)


def send(batch: Batch | None, fields: dict[str, np.dtype]) -> None:
    """On process 0: the batch's shapes, then the batch (None: the end of the work)."""
    header = np.zeros(_header_size(fields), np.int32)
    if batch is not None:
        header[0] = 1
        header[1:] = [size for name in fields for size in batch[name].shape]
    multihost_utils.broadcast_one_to_all(header)
    if batch is not None:
        multihost_utils.broadcast_one_to_all({name: batch[name] for name in fields})


def receive(fields: dict[str, np.dtype]) -> Batch | None:
    """On the other processes: process 0's next batch, or None at the end."""
    header = multihost_utils.broadcast_one_to_all(np.zeros(_header_size(fields), np.int32))
    if not int(header[0]):
        return None
    shapes = np.asarray(header[1:]).reshape(len(fields), 2)
    empty = {name: np.zeros(tuple(shape), dtype) for (name, dtype), shape in zip(fields.items(), shapes)}
    return {name: np.asarray(value) for name, value in multihost_utils.broadcast_one_to_all(empty).items()}


def follow(fields: dict[str, np.dtype], run: Callable[[Batch], object]) -> int:
    """Runs process 0's batches until it ends the work; returns how many ran."""
    count = 0
    while (batch := receive(fields)) is not None:
        run(batch)
        count += 1
    return count
