"""Rows of one shard file, whatever its format: parquet, jsonl (plain, gzip, zstd), plain text
or array_record, from local disk or a bucket (`gs://`, through `etils.epath`); and the rows of
a streamed Hugging Face dataset (`hf://`, format "hf", see `hf_stream`).

Each reader yields plain dicts, so filters and the text field work the same on every
format. Damage is reported with the file and the row it stopped at: a truncated download
is the usual cause, and knowing where lets the user check the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from etils import epath

from lmjax.data import hf_stream
from lmjax.data.text import decode_corpus, split_documents
from lmjax.errors import DataError

EXTENSIONS = (  # longest first: "x.jsonl.zst" is jsonl.zst, not jsonl
    (".jsonl.zst", "jsonl.zst"), (".jsonl.gz", "jsonl.gz"), (".json.gz", "jsonl.gz"),
    (".parquet", "parquet"), (".jsonl", "jsonl"), (".json", "jsonl"), (".txt", "text"),
    (".array_record", "array_record"),
)
CODECS = {"jsonl": None, "jsonl.gz": "gzip", "jsonl.zst": "zstd"}
CHUNK_BYTES = 1 << 16  # small enough that a truncation's row is near where the data stops
BATCH_ROWS = 1024  # rows per parquet batch or array_record read


def format_of(path: str) -> str | None:
    """The format a file name implies, or None when its extension says nothing."""
    return next((fmt for ext, fmt in EXTENSIONS if path.endswith(ext)), None)


def columns(path: epath.Path, fmt: str) -> list[str]:
    """The file's column names: parquet's schema, or the keys of the first JSON row."""
    if fmt == "parquet":
        with path.open("rb") as handle:
            return list(pq.ParquetFile(handle).schema_arrow.names)
    if fmt == "text":
        return ["text"]
    if fmt == "hf":
        return hf_stream.columns(path)
    first = next(iter(read_rows(path, fmt)), None)
    return list(first) if first is not None else []


def read_rows(path: epath.Path, fmt: str, wanted: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every row of the file as a dict (parquet: only the `wanted` columns, if given)."""
    if fmt == "parquet":
        yield from _parquet_rows(path, wanted)
    elif fmt in CODECS:
        yield from _jsonl_rows(path, CODECS[fmt])
    elif fmt == "text":
        text = decode_corpus(path.read_bytes(), path, "replace")
        yield from ({"text": document} for document in split_documents(text))
    elif fmt == "array_record":
        yield from _array_record_rows(path)
    elif fmt == "hf":
        yield from hf_stream.rows(path)
    else:
        raise DataError(f"{path}: unknown format {fmt!r}")


def _parquet_rows(path: epath.Path, wanted: Sequence[str] | None) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        try:
            reader = pq.ParquetFile(handle)
            for batch in reader.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
                yield from batch.to_pylist()
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{path} is not a readable parquet file ({_first_line(err)}); "
                            "re-download or rewrite it") from None


def _jsonl_rows(path: epath.Path, codec: str | None) -> Iterator[dict[str, Any]]:
    for row, line in enumerate(_lines(path, codec), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path} row {row} is not JSON ({err.msg}); fix or drop that line") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} row {row} is a JSON {type(record).__name__}, not an object")
        yield record


def _lines(path: epath.Path, codec: str | None) -> Iterator[bytes]:
    """Complete lines of the (decompressed) file; a truncated stream names the row it cut."""
    with path.open("rb") as handle:
        stream = pa.CompressedInputStream(pa.PythonFile(handle, mode="r"), codec) if codec else handle
        rest, row = b"", 0
        while True:
            try:
                chunk = stream.read(CHUNK_BYTES)
            except (OSError, pa.ArrowException) as err:
                raise DataError(
                    f"{path} is truncated or corrupt ({_first_line(err)}) at row {row + 1}: "
                    "re-download it or drop it from the glob"
                ) from None
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            row += len(lines)
            yield from lines
        if rest:
            yield rest


def _array_record_rows(path: epath.Path) -> Iterator[dict[str, Any]]:
    """Records are UTF-8 JSON objects, as jsonl lines are."""
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(str(path))
    try:
        for start in range(0, reader.num_records(), BATCH_ROWS):
            records = reader.read(start, min(start + BATCH_ROWS, reader.num_records()))
            for row, record in enumerate(records, start=start + 1):
                try:
                    yield json.loads(record)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise DataError(f"{path} record {row} is not a UTF-8 JSON object") from None
    finally:
        reader.close()


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
