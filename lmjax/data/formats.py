"""Rows of one shard file, whatever its format: parquet, jsonl (plain, gzip, zstd), plain text
or array_record, from local disk or a bucket (`gs://`, through `etils.epath`); and the rows of
a streamed Hugging Face dataset (`hf://`, format "hf", see `hf_stream`).

Each reader yields plain dicts, so filters and the text field work the same on every
format. Damage is reported with the file and the row it stopped at: a truncated download
is the usual cause, and knowing where lets the user check the file. Invalid UTF-8 follows
`data.invalid_utf8` in every format: replaced and counted, or refused with file, row and
byte offset. An empty file is an empty shard, with a warning; a 0-byte parquet file is
damage (a parquet file holds its schema even without rows).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from etils import epath

from lmjax.data import hf_stream
from lmjax.data.text import decode_corpus, decode_utf8, split_documents
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


def columns(path: epath.Path, fmt: str, invalid_utf8: str = "replace") -> list[str] | None:
    """The file's column names: parquet's schema, or the keys of the first JSON row; None for
    a file without rows (an empty shard says nothing about the source's schema)."""
    if fmt == "parquet":
        with path.open("rb") as handle, _parquet_damage(path):
            return list(pq.ParquetFile(handle).schema_arrow.names)
    if fmt == "text":
        return ["text"]
    if fmt == "hf":
        return hf_stream.columns(path)
    with warnings.catch_warnings():  # the schema check reads one row: its count is no news
        warnings.simplefilter("ignore")
        first = next(iter(read_rows(path, fmt, invalid_utf8=invalid_utf8)), None)
    return list(first) if first is not None else None


def read_rows(path: epath.Path, fmt: str, wanted: Sequence[str] | None = None, *,
              invalid_utf8: str = "replace", counts: dict[str, int] | None = None) -> Iterator[dict[str, Any]]:
    """Every row of the file as a dict (parquet: only the `wanted` columns, if given).
    `counts["invalid_utf8_bytes"]` (if given) adds up the bytes replaced by U+FFFD."""
    utf8 = Utf8(path, invalid_utf8)
    if fmt == "parquet":
        yield from _parquet_rows(path, wanted, utf8)
    elif fmt in CODECS:
        yield from _jsonl_rows(path, CODECS[fmt], utf8)
    elif fmt == "text":
        text = decode_corpus(path.read_bytes(), path, invalid_utf8, counts)
        yield from ({"text": document} for document in split_documents(text))
    elif fmt == "array_record":
        yield from _array_record_rows(path, utf8)
    elif fmt == "hf":
        yield from hf_stream.rows(path)
    else:
        raise DataError(f"{path}: unknown format {fmt!r}")
    utf8.report(counts)


class Utf8:
    """One file's bytes to text under `data.invalid_utf8`: replaced bytes are counted and
    reported once per file; under "error" the first one stops with file, row and offset."""

    def __init__(self, path, policy: str) -> None:
        self.path, self.policy, self.replaced, self.first_row = path, policy, 0, None

    def decode(self, data: bytes, row: int, offset: int = 0, within: str = "of the file") -> str:
        try:
            text, replaced = decode_utf8(data, self.policy)
        except UnicodeDecodeError as err:
            raise DataError(
                f"{self.path} row {row} is not valid UTF-8: byte offset {offset + err.start} {within} "
                f"is {data[err.start:err.start + 1]!r}; convert the file to UTF-8 (e.g. with iconv) "
                "or set data.invalid_utf8=replace"
            ) from None
        if replaced and self.first_row is None:
            self.first_row = row
        self.replaced += replaced
        return text

    def report(self, counts: dict[str, int] | None) -> None:
        if self.replaced:
            warnings.warn(f"{self.path}: replaced {self.replaced} invalid UTF-8 byte(s) with U+FFFD, "
                          f"the first in row {self.first_row} (set data.invalid_utf8=error to fail instead)",
                          stacklevel=3)
        if counts is not None:
            counts["invalid_utf8_bytes"] = counts.get("invalid_utf8_bytes", 0) + self.replaced


@contextlib.contextmanager
def _parquet_damage(path: epath.Path) -> Iterator[None]:
    """Arrow's complaint about a damaged file (a missing footer, bad pages) as a DataError
    naming the file."""
    try:
        yield
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path} is not a readable parquet file ({_first_line(err)}); "
                        "re-download or rewrite it") from None


def _parquet_rows(path: epath.Path, wanted: Sequence[str] | None, utf8: Utf8) -> Iterator[dict[str, Any]]:
    """Rows of the file; string columns are read as bytes and decoded here, so invalid UTF-8
    follows the policy instead of failing inside arrow."""
    row = 0
    with path.open("rb") as handle, _parquet_damage(path):
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=BATCH_ROWS, columns=wanted):
            values = {}
            for name, column in zip(batch.schema.names, batch.columns):
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    raw = column.cast(pa.large_binary()).to_pylist()
                    values[name] = [None if v is None else utf8.decode(v, row + i + 1, 0, f"of its {name}")
                                    for i, v in enumerate(raw)]
                else:
                    values[name] = column.to_pylist()
            for i in range(batch.num_rows):
                yield {name: column[i] for name, column in values.items()}
            row += batch.num_rows


def _jsonl_rows(path: epath.Path, codec: str | None, utf8: Utf8) -> Iterator[dict[str, Any]]:
    within = "of the decompressed file" if codec else "of the file"
    for row, (offset, line) in enumerate(_lines(path, codec), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(utf8.decode(line, row, offset, within))
        except json.JSONDecodeError as err:
            raise DataError(f"{path} row {row} is not JSON ({err.msg}); fix or drop that line") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} row {row} is a JSON {type(record).__name__}, not an object")
        yield record


def _lines(path: epath.Path, codec: str | None) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of each complete line of the (decompressed) file; a truncated
    stream names the row it cut."""
    with path.open("rb") as handle:
        stream = pa.CompressedInputStream(pa.PythonFile(handle, mode="r"), codec) if codec else handle
        rest, row, offset = b"", 0, 0
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
            for line in lines:
                yield offset, line
                offset += len(line) + 1
        if rest:
            yield offset, rest


def _array_record_rows(path: epath.Path, utf8: Utf8) -> Iterator[dict[str, Any]]:
    """Records are UTF-8 JSON objects, as jsonl lines are."""
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(str(path))
    try:
        for start in range(0, reader.num_records(), BATCH_ROWS):
            records = reader.read(start, min(start + BATCH_ROWS, reader.num_records()))
            for row, record in enumerate(records, start=start + 1):
                text = utf8.decode(record, row, 0, "of the record")
                try:
                    yield json.loads(text)
                except json.JSONDecodeError:
                    raise DataError(f"{path} record {row} is not a JSON object") from None
    finally:
        reader.close()


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
