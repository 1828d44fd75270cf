"""The token cache: every source tokenized once into memory-mapped train/validation streams.

Layout under `<cache dir>/token_cache/<source>-<key>/`:

    shards/<i>.tokens, <i>.docs.npy, <i>.json   one per input file; the .json is written
                                                last, so a shard with one is finished
    train.npy, validation.npy                   the source's packed streams after dedup
    manifest.json                               documents, tokens and bytes per split and
                                                per shard, duplicates and filtered rows

The key hashes what the streams depend on: each file's name, size and modification time
(a bucket file's content checksum instead of its mtime; an `hf://` stream's dataset, config,
split, revision and document limit), the format, text field and filters, the validation fraction and the tokenizer's files. A
changed shard therefore gets a new directory and an unchanged source is reused as is. An
interrupted prepare keeps its finished shards and resumes with the rest. Shards are
tokenized by `data.prepare_workers` processes; exact duplicate documents (same text) are
dropped when the shards are joined, the first occurrence kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tqdm

from lmjax.config import DataConfig, resolve_cache_dir
from lmjax.data import workers as workers_lib
from lmjax.data.fingerprint import tokenizer_fingerprint
from lmjax.data.locking import atomic_dir, atomic_write_bytes, file_lock, umask
from lmjax.data.sources import HfStream, Source
from lmjax.errors import DataError
from lmjax.tokenizers import Tokenizer, load

SPLITS = ("train", "validation")
CACHE_VERSION = 1
GROUP_SIZE = 256  # documents per encode call: SentencePiece encodes a group on threads
_LOADED: dict[str, Tokenizer] = {}


class TokenFile:
    """A packed token stream opened lazily as a read-only memory map.

    Pickles as its path, so grain's worker processes map the file themselves instead of
    receiving a copy of the tokens; each reads only the pages its windows touch.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index):
        return np.asarray(self.array[index])

    def __getstate__(self) -> dict:
        return {"path": self.path, "_array": None}


@dataclasses.dataclass(frozen=True)
class SourceCache:
    """One source's prepared streams and manifest."""

    source: Source
    directory: Path
    manifest: dict

    def tokens(self, split: str) -> TokenFile:
        return TokenFile(self.directory / f"{split}.npy")


def prepare_sources(data: DataConfig, sources: Sequence[Source], tokenizer: Tokenizer,
                    *, workers: int | None = None, progress: bool = False) -> list[SourceCache]:
    """Each source's cache: reused when its manifest exists, else built (or finished) under
    its lock, the shards of all sources sharing one pool of worker processes."""
    workers = workers or data.prepare_workers or os.cpu_count() or 1
    tokenizer_dir, fingerprint = _saved_tokenizer(data, tokenizer)
    root = resolve_cache_dir(data) / "token_cache"
    directories = [root / f"{source.name}-{source_key(data, source, fingerprint)}" for source in sources]
    with contextlib.ExitStack() as locks:
        missing = []
        for source, directory in zip(sources, directories):
            locks.enter_context(file_lock(directory))
            if not (directory / "manifest.json").is_file():
                missing.append((source, directory))
        shards = _tokenize_shards(missing, tokenizer_dir, workers, progress)
        for (source, directory), stats in zip(missing, shards):
            manifest = {**_join(source, directory, stats, data.validation_fraction), "tokenizer": fingerprint}
            atomic_write_bytes(directory / "manifest.json",
                               lambda out, m=manifest: out.write(json.dumps(m, indent=1).encode()))
    caches = [SourceCache(source, directory, json.loads((directory / "manifest.json").read_text()))
              for source, directory in zip(sources, directories)]
    if data.invalid_utf8 == "error":
        for cache in caches:
            _refuse_replaced_bytes(cache)
    return caches


def _refuse_replaced_bytes(cache: SourceCache) -> None:
    """data.invalid_utf8=error holds for a cache prepared earlier under "replace" too (the
    setting is not in the key, so switching it does not tokenize everything again)."""
    for shard in cache.manifest["shards"]:
        if shard.get("invalid_utf8_bytes"):
            raise DataError(
                f"{shard['file']} (source {cache.source.name}) had {shard['invalid_utf8_bytes']} invalid "
                "UTF-8 byte(s), replaced when its cache was prepared; convert it to UTF-8 (e.g. with "
                "iconv) or set data.invalid_utf8=replace"
            )


def source_key(data: DataConfig, source: Source, fingerprint: str) -> str:
    """Hash of everything the source's streams depend on: local files by name, size and mtime,
    bucket files by name, size and checksum, a stream (`hf://`) by its description."""
    files = [[str(path), *file_identity(path)] for path in source.files]
    described = {"version": CACHE_VERSION, "format": source.format, "text_field": source.text_field,
                 "filters": [str(item) for item in source.filters], "files": files,
                 "validation_fraction": data.validation_fraction, "tokenizer": fingerprint}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def file_identity(path) -> list:
    """What says a file changed. Local files: size and mtime to the nanosecond (a rewrite
    within a second still counts). Bucket files: size and the object's content checksum
    (GCS md5Hash or crc32c, S3's ETag; else its generation, else its mtime), since a bucket's
    mtime is listed to the second. A stream: nothing beyond its description (its str)."""
    if isinstance(path, HfStream):
        return []
    if "://" not in str(path):
        stat = os.stat(path)
        return [stat.st_size, stat.st_mtime_ns]
    try:
        from etils.epath import backend as epath_backend

        info = epath_backend.fsspec_backend.fs(str(path)).info(str(path))
    except (ImportError, AttributeError):  # an epath without the fsspec backend: as listed
        stat = path.stat()
        return [stat.length, stat.mtime]
    checksum = next((str(info[key]) for key in ("md5Hash", "crc32c", "ETag", "etag", "generation")
                     if info.get(key)), None)
    return [info.get("size"), checksum or str(info.get("mtime"))]


def is_validation(hashes: np.ndarray, fraction: float) -> np.ndarray:
    """Held out by hash, not by position: stable under added shards, the same on every host."""
    return (hashes >> np.uint64(32)) % np.uint64(1_000_000) < np.uint64(round(fraction * 1_000_000))


def document_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _tokenize_shards(missing: list[tuple[Source, Path]], tokenizer_dir: str, workers: int,
                     progress: bool) -> list[list[dict]]:
    """Per source, every shard's stats, tokenizing those without a finished marker."""
    jobs = [(source, index, str(directory / "shards"), tokenizer_dir)
            for source, directory in missing for index in range(len(source.files))]
    done = {(job[2], job[1]): _read_marker(Path(job[2]), job[1]) for job in jobs}
    todo = [job for job in jobs if done[job[2], job[1]] is None]
    for job in todo:
        Path(job[2]).mkdir(parents=True, exist_ok=True)
    with tqdm.tqdm(total=len(jobs), initial=len(jobs) - len(todo), unit="shard", desc="prepare",
                   disable=not (progress and todo)) as bar:
        for job, stats in zip(todo, workers_lib.run(tokenize_shard, todo, workers)):
            done[job[2], job[1]] = stats
            bar.update()
    return [[done[str(directory / "shards"), index] for index in range(len(source.files))]
            for source, directory in missing]


def tokenize_shard(job: tuple[Source, int, str, str]) -> dict:
    """Tokenizes one file into `<i>.tokens` (int32, each document followed by eos) and
    `<i>.docs.npy` (tokens, bytes and hash per document); writes the marker last."""
    source, index, shard_dir, tokenizer_dir = job
    tokenizer = _LOADED.get(tokenizer_dir) or _LOADED.setdefault(tokenizer_dir, load(tokenizer_dir))
    path, counts, docs = source.files[index], {"rows": 0}, []
    with open(Path(shard_dir) / f"{index}.tokens", "wb") as out:
        for texts, encoded in _encoded_groups(tokenizer, source.documents(path, counts)):
            lengths = [len(ids) + 1 for ids in encoded]
            with_eos = itertools.chain.from_iterable((*ids, tokenizer.eos_id) for ids in encoded)
            np.fromiter(with_eos, np.int32, sum(lengths)).tofile(out)  # one write per group
            docs += [(n, len(t.encode("utf-8")), document_hash(t)) for n, t in zip(lengths, texts)]
    table = np.array(docs, dtype=[("tokens", np.int64), ("bytes", np.int64), ("hash", np.uint64)])
    atomic_write_bytes(Path(shard_dir) / f"{index}.docs.npy", lambda out: np.save(out, table))
    stats = {"index": index, "file": str(path), "rows": counts["rows"], "documents": len(docs),
             "tokens": int(table["tokens"].sum()), "bytes": int(table["bytes"].sum()),
             "invalid_utf8_bytes": counts.get("invalid_utf8_bytes", 0),
             "removed_by": counts.get("removed_by", {})}
    atomic_write_bytes(Path(shard_dir) / f"{index}.json", lambda out: out.write(json.dumps(stats).encode()))
    return stats


def _encoded_groups(tokenizer: Tokenizer, texts: Iterator[str]) -> Iterator[tuple[list[str], list]]:
    """(texts, their ids) for GROUP_SIZE documents at a time, never the whole file at once."""
    while group := list(itertools.islice(texts, GROUP_SIZE)):
        yield group, tokenizer.encode_batch(group)


def _join(source: Source, directory: Path, shards: list[dict], fraction: float) -> dict:
    """Writes train.npy and validation.npy from the shards, each document once; the manifest."""
    tables = [np.load(directory / "shards" / f"{s['index']}.docs.npy") for s in shards]
    table = np.concatenate(tables)
    _, first = np.unique(table["hash"], return_index=True)
    kept = np.zeros(len(table), bool)
    kept[first] = True
    held_out = is_validation(table["hash"], fraction)
    manifest = {"source": source.name, "format": source.format, "text_field": source.text_field,
                "filters": [str(item) for item in source.filters], "shards": shards,
                "rows": sum(s["rows"] for s in shards), "duplicates": int(len(table) - len(first))}
    manifest["filtered_out"] = manifest["rows"] - len(table)
    manifest["invalid_utf8_bytes"] = sum(s.get("invalid_utf8_bytes", 0) for s in shards)
    manifest["removed_by"] = {str(item): sum(s.get("removed_by", {}).get(str(item), 0) for s in shards)
                              for item in source.filters}
    chosen = {"train": kept & ~held_out, "validation": kept & held_out}
    for split, mask in chosen.items():
        manifest[split] = {"documents": int(mask.sum()), "tokens": int(table["tokens"][mask].sum()),
                           "bytes": int(table["bytes"][mask].sum())}
    _write_splits(directory, shards, tables, chosen, {split: manifest[split]["tokens"] for split in chosen})
    return manifest


def _write_splits(directory: Path, shards: list[dict], tables: list[np.ndarray],
                  chosen: dict[str, np.ndarray], totals: dict[str, int]) -> None:
    """Every split's stream from the shards' token files, each file read once."""
    offsets = np.cumsum([0, *(len(t) for t in tables)])
    with contextlib.ExitStack() as stack:
        appends = {split: stack.enter_context(_new_stream(directory / f"{split}.npy", totals[split]))
                   for split in chosen}
        for stats, table, a, b in zip(shards, tables, offsets, offsets[1:]):
            tokens = np.fromfile(directory / "shards" / f"{stats['index']}.tokens", dtype=np.int32)
            for split, mask in chosen.items():
                appends[split](tokens[np.repeat(mask[a:b], table["tokens"])])


@contextlib.contextmanager
def _new_stream(target: Path, total: int) -> Iterator:
    """A function appending int32 tokens to a new `total`-token .npy, moved to `target` at exit."""
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.tmp-", delete=False) as tmp:
        out = np.lib.format.open_memmap(tmp.name, mode="w+", dtype=np.int32, shape=(total,))
        position = 0

        def append(piece: np.ndarray) -> None:
            nonlocal position
            out[position:position + len(piece)] = piece
            position += len(piece)

        yield append
        out.flush()
        del out
    os.chmod(tmp.name, 0o666 & ~umask())
    os.replace(tmp.name, target)


def _read_marker(shard_dir: Path, index: int) -> dict | None:
    marker = shard_dir / f"{index}.json"
    return json.loads(marker.read_text()) if marker.is_file() else None


def _saved_tokenizer(data: DataConfig, tokenizer: Tokenizer) -> tuple[str, str]:
    """The tokenizer saved under the cache (workers load it from there) and its fingerprint."""
    fingerprint = tokenizer_fingerprint(tokenizer)
    directory = resolve_cache_dir(data) / "token_cache" / "tokenizers" / fingerprint
    with file_lock(directory):
        if not directory.is_dir():
            with atomic_dir(directory) as tmp:
                tokenizer.save(tmp)
    return str(directory), fingerprint
