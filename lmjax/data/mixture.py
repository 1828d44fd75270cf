"""Weighted mixtures of sources as one random-access grain dataset.

Example i of the mixture is a pure function of (seed, i), like the single-corpus pipeline:
the global order is cut into blocks of `BLOCK` examples; each block holds every source in
fixed counts (the weights rounded to 1/BLOCK by largest remainder) in an order shuffled
by (seed, block). So the iterator's state is still one index, a resumed run sees the same
batches, the proportions over any block are exact, and how many examples each source has
given after n examples is known without reading any data (per-source tokens and epochs).
Each source walks its own windows in an order reshuffled every epoch of that source, so a
small source under a large weight simply repeats, and says how many times.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable

import grain
import numpy as np

from lmjax.config import DataConfig
from lmjax.data.cache import SourceCache, prepare_sources
from lmjax.data.sources import resolve_sources
from lmjax.errors import DataError
from lmjax.tokenizers import Tokenizer

BLOCK = 1024


def block_counts(weights: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Examples per source in each block: block * w / sum(w), rounded by largest remainder."""
    share = np.asarray(weights, np.float64) / np.sum(weights) * block
    counts = np.floor(share).astype(np.int64)
    leftover = block - counts.sum()
    counts[np.argsort(-(share - counts), kind="stable")[:leftover]] += 1
    return counts


class MixtureSampler:
    """Global example index -> (source, that source's own example number)."""

    def __init__(self, weights: np.ndarray, seed: int, block: int = BLOCK) -> None:
        self.counts = block_counts(weights, block)
        self.seed, self.block = seed, block
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None

    def _order(self, number: int) -> tuple[np.ndarray, np.ndarray]:
        """Block `number`: the source of each position, and its rank among that source's."""
        if self._cached is None or self._cached[0] != number:
            order = np.repeat(np.arange(len(self.counts)), self.counts)
            np.random.default_rng([self.seed, number]).shuffle(order)
            rank = np.zeros(self.block, np.int64)
            for source in range(len(self.counts)):
                rank[order == source] = np.arange(self.counts[source])
            self._cached = (number, order, rank)
        return self._cached[1], self._cached[2]

    def locate(self, index: int) -> tuple[int, int]:
        number, position = divmod(index, self.block)
        order, rank = self._order(number)
        source = int(order[position])
        return source, number * int(self.counts[source]) + int(rank[position])

    def examples_per_source(self, examples: int) -> np.ndarray:
        """How many of the first `examples` examples each source gave."""
        number, position = divmod(examples, self.block)
        order, _ = self._order(number)
        return number * self.counts + np.bincount(order[:position], minlength=len(self.counts))


class MixedWindows(grain.transforms.Map):
    """Example index -> the window the sampler picks: source s's k-th in its epoch order."""

    def __init__(self, sampler: MixtureSampler, orders: list[grain.MapDataset], windows: list) -> None:
        self.sampler, self.orders, self.windows = sampler, orders, windows

    def map(self, index: int) -> np.ndarray:
        source, number = self.sampler.locate(index)
        return self.windows[source].map(self.orders[source][number])


@dataclasses.dataclass(frozen=True)
class Mixture:
    """The prepared sources of `data.sources` and their weights."""

    caches: tuple[SourceCache, ...]

    @property
    def names(self) -> list[str]:
        return [cache.source.name for cache in self.caches]

    @property
    def weights(self) -> np.ndarray:
        return np.array([cache.source.weight for cache in self.caches], np.float64)

    def cache(self, name: str) -> SourceCache:
        for cache in self.caches:
            if cache.source.name == name:
                return cache
        raise DataError(f"no source named {name!r}: the sources are {', '.join(self.names)}")

    def examples(self, split: str, make_window: Callable, seed: int, global_batch: int) -> grain.MapDataset:
        """Windows in global order. train: the weighted mixture, forever; validation: the same
        mixture without shuffling, as many examples as the sources' windows, whole batches."""
        windows = [make_window(cache.tokens(split)) for cache in self.caches]  # sources trained
        # on have both splits (load_mixture checks), so each of them has windows
        if split == "train":
            orders = [grain.MapDataset.range(w.count).shuffle(seed=seed + i).repeat() if w.count else None
                      for i, w in enumerate(windows)]
            length = sys.maxsize
        else:
            orders = [grain.MapDataset.range(max(w.count, 1)).repeat() for w in windows]
            used = sum(w.count for w, weight in zip(windows, self.weights) if weight > 0)
            length = math.ceil(used / global_batch) * global_batch
        sampler = MixtureSampler(self.weights, seed)
        return grain.MapDataset.range(length).map(MixedWindows(sampler, orders, windows))

    def progress(self, examples: int, seed: int, window_counts: list[int], window_tokens: int) -> dict:
        """Per source after `examples` training examples: tokens fed (`window_tokens` per
        example) and epochs of its train windows completed."""
        given = MixtureSampler(self.weights, seed).examples_per_source(examples)
        record = {}
        for name, count, windows in zip(self.names, given, window_counts):
            record[f"tokens_seen/{name}"] = int(count) * window_tokens
            record[f"epochs/{name}"] = float(count) / windows if windows else 0.0
        return record


def load_mixture(data: DataConfig, tokenizer: Tokenizer, *, workers: int | None = None,
                 progress: bool = False) -> Mixture:
    """Resolves and checks the sources, then prepares (or reuses) their token caches."""
    sources = resolve_sources(data)
    caches = prepare_sources(data, sources, tokenizer, workers=workers, progress=progress)
    for cache in caches:
        _check_splits(cache, data.validation_fraction)
    return Mixture(tuple(caches))


def _check_splits(cache: SourceCache, fraction: float) -> None:
    """Before training starts: a source that is trained on must have both splits, since every
    evaluation reads its validation tokens."""
    for split in ("train", "validation") if cache.source.weight > 0 else ():
        if cache.manifest[split]["tokens"] < 2:
            more = f" or raise data.validation_fraction={fraction}" if split == "validation" else ""
            raise DataError(
                f"source {cache.source.name} has {cache.manifest[split]['documents']} {split} documents "
                f"after filters and dedup; loosen its filters, add files{more}"
            )
