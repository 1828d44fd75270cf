"""`hf://` sources: a Hugging Face dataset read as a stream (`datasets.load_dataset(...,
streaming=True)`), for users with a network who would rather not download shards first.

Syntax, in `data.sources[i].files`:

    hf://ORG/NAME[/CONFIG][?split=SPLIT&revision=REV&limit=N]

e.g. `hf://HuggingFaceFW/fineweb-2/spa_Latn?limit=200000`. `split` defaults to `train`;
`revision` (a branch, tag or commit) to the dataset's default branch; `limit` (documents
kept after the source's filters) to the whole split, which for a web crawl is a very long
time. The cache key is this description (dataset id, config, split, revision, limit) with
the source's filters: a stream has no size or mtime, so a dataset updated upstream under the
same description is not noticed; pin `revision` to a commit to be sure.

`datasets` is imported only when a stream is opened: it is the optional extra `hf-data`.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Iterator
from typing import Any

from lmjax.errors import DataError

PREFIX = "hf://"
EXTRA = "pip install 'lmjax[hf-data]'"
QUERY_KEYS = ("split", "revision", "limit")


@dataclasses.dataclass(frozen=True)
class HfStream:
    """One streamed dataset split; stands in a Source's `files` where a path would."""

    dataset: str  # ORG/NAME
    config: str = ""
    split: str = "train"
    revision: str = ""
    limit: int | None = None

    def __str__(self) -> str:
        query = {"split": self.split, "revision": self.revision, "limit": self.limit}
        shown = urllib.parse.urlencode({k: v for k, v in query.items() if v not in ("", None)})
        return f"{PREFIX}{self.dataset}{'/' + self.config if self.config else ''}?{shown}"

    @property
    def name(self) -> str:
        """The source's default name: the config (`spa_Latn`), else the dataset's name."""
        return self.config or self.dataset.split("/")[-1]


def is_stream(pattern: str) -> bool:
    return pattern.startswith(PREFIX)


def parse(spec: str, where: str) -> HfStream:
    """`hf://ORG/NAME[/CONFIG][?split=..&revision=..&limit=..]` as an HfStream; DataError
    naming `where` (the config entry) otherwise."""
    usage = "write hf://ORG/NAME[/CONFIG][?split=SPLIT&revision=REV&limit=N]"
    parts = urllib.parse.urlsplit(spec)
    path = [part for part in f"{parts.netloc}{parts.path}".split("/")]
    if parts.fragment or not 2 <= len(path) <= 3 or not all(path) or path[0] == "datasets":
        raise DataError(f"{where}={spec!r} is not a streamed dataset; {usage}")
    try:
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError:
        raise DataError(f"{where}={spec!r} has an unreadable query; {usage}") from None
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise DataError(f"{where}={spec!r} has unknown option(s) {', '.join(unknown)}; use {', '.join(QUERY_KEYS)}")
    limit = query.get("limit")
    if limit is not None and not (limit.isdigit() and int(limit) > 0):
        raise DataError(f"{where}={spec!r}: limit={limit!r} must be a positive number of documents")
    return HfStream(dataset="/".join(path[:2]), config=path[2] if len(path) == 3 else "",
                    split=query.get("split") or "train", revision=query.get("revision", ""),
                    limit=int(limit) if limit else None)


def open_stream(stream: HfStream):
    """The split as a `datasets.IterableDataset` (nothing is downloaded ahead of reading)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{stream} needs the datasets package, which is not installed; {EXTRA}") from None
    try:
        return datasets.load_dataset(stream.dataset, stream.config or None, split=stream.split,
                                     revision=stream.revision or None, streaming=True)
    except Exception as err:  # the Hub's errors are many (network, auth, not found): one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(f"{stream} cannot be opened ({type(err).__name__}: {first}); check the dataset "
                        "id, config, split and revision, and the network") from None


def rows(stream: HfStream) -> Iterator[dict[str, Any]]:
    """Every row of the split, as dicts, in the stream's order."""
    for row in open_stream(stream):
        yield dict(row)


def columns(stream: HfStream) -> list[str]:
    """The split's columns: its declared features, else the first row's keys."""
    dataset = open_stream(stream)
    if getattr(dataset, "features", None):
        return list(dataset.features)
    first = next(iter(dataset), None)
    return list(first) if first is not None else []
