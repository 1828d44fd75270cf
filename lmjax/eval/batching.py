"""Requests into fixed-shape batches: length buckets, padding, and the order to run them in.

A jitted scorer compiles once per (batch, length) shape. Rounding every row's length up to
a bucket (powers of two up to the model's context) and every batch up to a fixed number of
rows means a whole task compiles a handful of programs, not one per request length.
Requests run longest first so a batch's rows have similar lengths (little padding), and
results come back in the caller's order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

MIN_BUCKET = 32


def buckets(max_len: int) -> list[int]:
    """The lengths rows are padded to: 32, 64, 128, ... and the model's context itself."""
    sizes, size = [], MIN_BUCKET
    while size < max_len:
        sizes.append(size)
        size *= 2
    return [*sizes, max_len]


def bucket_for(length: int, sizes: Sequence[int]) -> int:
    """The smallest bucket that holds `length` tokens."""
    for size in sizes:
        if length <= size:
            return size
    raise ValueError(f"length {length} exceeds the largest bucket {sizes[-1]}")


def batch_rows(n_rows: int, batch_size: int, shards: int = 1) -> int:
    """Rows of a batch array holding `n_rows` requests: `shards` times the smallest power of
    two that fits, at most `batch_size` (a multiple of `shards`). A task's last, partial batch
    then compiles one of a few smaller programs instead of scoring padded rows."""
    rows = shards
    while rows < n_rows:
        rows *= 2
    return min(rows, batch_size)


def longest_first(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices of the rows, longest first, in chunks of `batch_size`."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def pad_rows(rows: Sequence[Sequence[int]], n_rows: int, length: int, left: bool = False,
             fill: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`rows` as an n_rows×length int32 array and its mask (1 = real token); missing rows are
    all padding. Right padding by default (scoring), left for generation."""
    ids = np.full((n_rows, length), fill, np.int32)
    mask = np.zeros((n_rows, length), np.int32)
    for i, row in enumerate(rows):
        if not len(row):
            continue
        if left:
            ids[i, length - len(row):], mask[i, length - len(row):] = row, 1
        else:
            ids[i, :len(row)], mask[i, :len(row)] = row, 1
    return ids, mask
