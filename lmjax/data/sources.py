"""`data.sources` resolved against the file system: which files each source reads, in what
format, and its documents after the text field and filters are applied.

A source is files (a glob, local or `gs://`) or one streamed Hugging Face dataset
(`hf://ORG/NAME[/CONFIG][?split=..&revision=..&limit=..]`, see `hf_stream`).

Everything that a user's typo or a bad shard can break is checked here, from metadata
alone (globs, parquet footers, first JSON rows; a stream's features or first row), before
any tokenizing: a glob matching nothing, a missing text field, a filter on a missing column,
files of one source whose columns differ.
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from etils import epath

from lmjax.config import DataConfig, SourceConfig, resolve_data_dir, source_configs
from lmjax.data import filters as filters_lib
from lmjax.data import formats, hf_stream, signals
from lmjax.data.hf_stream import HfStream
from lmjax.errors import DataError

_WILDCARD = re.compile(r"[*?\[]")


@dataclasses.dataclass(frozen=True)
class Source:
    """One resolved source: sorted files, format, text field, parsed filters, weight."""

    name: str
    files: tuple[epath.Path | HfStream, ...]  # an hf:// source: its one stream
    format: str
    text_field: str
    filters: tuple[filters_lib.Filter, ...]
    weight: float
    invalid_utf8: str = "replace"  # data.invalid_utf8, applied to every format

    def wanted_columns(self) -> list[str]:
        """Columns to read from the file: the text and every filtered column not computed."""
        computed = filters_lib.computed_columns(self.filters)
        return sorted({self.text_field, *(item.column for item in self.filters)} - set(computed))

    def documents(self, path: epath.Path, counts: dict | None = None) -> Iterator[str]:
        """The texts of the file's rows that pass every filter, in file order; counts["rows"]
        (if given) counts every row read, kept or not, counts["removed_by"] maps each
        filter to the rows it was the first to fail, and counts["invalid_utf8_bytes"] adds up
        the bytes replaced under data.invalid_utf8=replace. A stream stops after its `limit`
        documents (kept ones: the filters come first)."""
        counts = {"rows": 0} if counts is None else counts
        removed = counts.setdefault("removed_by", {str(item): 0 for item in self.filters})
        computed = filters_lib.computed_columns(self.filters)
        limit, kept = getattr(path, "limit", None), 0  # a stream's document limit (positive)
        rows = formats.read_rows(path, self.format, self.wanted_columns(), invalid_utf8=self.invalid_utf8,
                                 counts=counts)
        for row, record in enumerate(rows, 1):
            counts["rows"] += 1
            if computed:
                record.update(signals.compute(record.get(self.text_field), computed))
            failed = filters_lib.first_failing(self.filters, record)
            if failed is not None:
                removed[str(self.filters[failed])] += 1
                continue
            kept += 1
            text = record.get(self.text_field)
            if not isinstance(text, str):
                raise DataError(
                    f"{path} row {row}: text field {self.text_field!r} is "
                    f"{'missing' if text is None else type(text).__name__}, not a string; drop the "
                    "row or set text_field"
                )
            yield text
            if kept == limit:  # the stream has no end: stop at the limit, not one row later
                return

    def describe(self) -> str:
        rules = f", filters {', '.join(map(str, self.filters))}" if self.filters else ""
        what = f"stream {self.files[0]}" if self.format == "hf" else f"{len(self.files)} {self.format} file(s)"
        return f"{self.name}: {what}, weight {self.weight:g}{rules}"


def resolve_sources(data: DataConfig) -> list[Source]:
    """Every configured source with its files found and schemas checked; DataError otherwise."""
    configs = source_configs(data)
    names = _names(configs)
    sources = [_resolve(index, config, name, resolve_data_dir(data), data.invalid_utf8)
               for index, (config, name) in enumerate(zip(configs, names))]
    for source in sources:
        check_schema(source)
    return sources


def check_schema(source: Source) -> None:
    """All files with rows share the first one's columns; the text field and filtered columns
    exist. A file without rows is an empty shard: a warning, not a schema."""
    schemas = [(path, formats.columns(path, source.format, source.invalid_utf8)) for path in source.files]
    empty = [str(path) for path, found in schemas if found is None]
    if empty:
        warnings.warn(f"source {source.name}: {len(empty)} empty file(s), read as empty shards: "
                      f"{', '.join(empty[:3])}{' ...' if len(empty) > 3 else ''}", stacklevel=2)
    schemas = [(path, found) for path, found in schemas if found is not None]
    if not schemas:
        raise DataError(f"source {source.name}: all its {len(source.files)} file(s) are empty, e.g. "
                        f"{source.files[0]}; fix its glob or the files")
    first, expected = schemas[0]
    if source.text_field not in expected:
        raise DataError(
            f"source {source.name}: text field {source.text_field!r} is not a column of {first}; its "
            f"columns are {', '.join(expected)}; set text_field"
        )
    filters_lib.check_columns(source.filters, expected, f"{first} (source {source.name})")
    for path, found in schemas[1:]:
        if set(found) != set(expected):
            raise DataError(
                f"source {source.name} mixes schemas: {path} has columns {', '.join(found)} but "
                f"{first} has {', '.join(expected)}; split them into two sources"
            )


def glob_files(pattern: str, data_dir: Path) -> list[epath.Path]:
    """Files matching the glob: on a bucket (`gs://...`), else locally, relative paths tried
    in the working directory first and then in the data dir."""
    if "://" in pattern:
        return sorted(_bucket_glob(pattern), key=str)
    candidates = [pattern] if Path(pattern).expanduser().is_absolute() else [pattern, str(data_dir / pattern)]
    for candidate in candidates:
        found = sorted(p for p in globlib.glob(str(Path(candidate).expanduser()), recursive=True)
                       if Path(p).is_file())
        if found:
            return [epath.Path(p) for p in found]
    return []


def _bucket_glob(pattern: str) -> list[epath.Path]:
    parts = pattern.split("/")
    first = next((i for i, part in enumerate(parts) if _WILDCARD.search(part)), len(parts))
    base = epath.Path("/".join(parts[:first]))
    if first == len(parts):
        return [base] if base.exists() else []
    if "**" in pattern:  # epath refuses `**` on buckets; fsspec lists the prefix recursively
        from etils.epath import backend as epath_backend

        return [path for path in map(epath.Path, epath_backend.fsspec_backend.glob(pattern)) if path.is_file()]
    return [path for path in base.glob("/".join(parts[first:])) if path.is_file()]


def _resolve(index: int, config: SourceConfig, name: str, data_dir: Path, invalid_utf8: str) -> Source:
    where = f"data.sources[{index}].filters"
    if hf_stream.is_stream(config.files):
        stream = hf_stream.parse(config.files, f"data.sources[{index}].files")
        if config.format:
            raise DataError(f"source {name}: an hf:// source is read by datasets, not as "
                            f"{config.format}; drop data.sources[{index}].format")
        return Source(name=name, files=(stream,), format="hf", text_field=config.text_field,
                      filters=filters_lib.parse_filters(config.filters, where), weight=config.weight,
                      invalid_utf8=invalid_utf8)
    files = glob_files(config.files, data_dir)
    if not files:
        raise DataError(
            f"source {name}: the glob {config.files!r} matches no file (looked in the working "
            f"directory and in the data dir {data_dir}); fix data.sources[{index}].files"
        )
    fmt = config.format or _format(name, files)
    return Source(name=name, files=tuple(files), format=fmt, text_field=config.text_field,
                  filters=filters_lib.parse_filters(config.filters, where), weight=config.weight,
                  invalid_utf8=invalid_utf8)


def _format(name: str, files: list[epath.Path]) -> str:
    found = {formats.format_of(str(path)) for path in files}
    if None in found or len(found) != 1:
        shown = ", ".join(sorted(str(fmt) for fmt in found))
        raise DataError(
            f"source {name}: cannot tell one format from the file names (found {shown}); set its "
            "format to one of parquet, jsonl, jsonl.gz, jsonl.zst, text, array_record"
        )
    return found.pop()


def _names(configs: list[SourceConfig]) -> list[str]:
    """Given names, else the glob's last fixed folder (`fineweb2/spa_Latn/*.parquet` is
    spa_Latn) or file stem. Globs whose default names collide (FineWeb-2's
    `data/spa_Latn/train/*.parquet` beside `data/cat_Latn/train/*.parquet`) are named after
    their first fixed folder that differs (spa_Latn, cat_Latn); else the entry's index is added."""
    names = [config.name or _default_name(config.files) for config in configs]
    for name in set(names):
        clashing = [i for i, config in enumerate(configs) if names[i] == name and not config.name]
        if len(clashing) > 1:
            for index, better in zip(clashing, _differing_parts([configs[i].files for i in clashing])):
                names[index] = better
    return [name if names.count(name) == 1 or config.name else f"{name}_{index}"
            for index, (name, config) in enumerate(zip(names, configs))]


def _differing_parts(patterns: list[str]) -> list[str]:
    """Each glob's first fixed path component where the globs part ways, if those are all
    different; else their shared default name."""
    parts = [[part for part in pattern.split("/") if part and not _WILDCARD.search(part)]
             for pattern in patterns]
    for position in range(min(map(len, parts))):
        found = [re.sub(r"[^\w-]+", "_", each[position]) for each in parts]
        if len(set(found)) == len(found):
            return found
        if len(set(found)) > 1:
            break
    return [_default_name(pattern) for pattern in patterns]


def _default_name(pattern: str) -> str:
    if hf_stream.is_stream(pattern):
        try:
            return re.sub(r"[^\w-]+", "_", hf_stream.parse(pattern, "files").name)
        except DataError:
            return "source"  # _resolve reports the bad spec
    parts = [part for part in pattern.split("/") if part and "://" not in part]
    fixed = [part for part in parts if not _WILDCARD.search(part)]
    if fixed and fixed[-1] == parts[-1]:  # a single file: its stem
        return re.sub(r"[^\w-]+", "_", fixed[-1].split(".")[0]) or "source"
    return re.sub(r"[^\w-]+", "_", fixed[-1]) if fixed else "source"
