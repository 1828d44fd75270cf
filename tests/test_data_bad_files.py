"""Damaged, empty and non-UTF-8 shards: each is one line naming the file (and the row and byte
where it has them), from the checks `lmjax train --check` runs (`resolve_sources`) as from
the prepare that reads every row; an empty file is an empty shard, not a schema."""

import json
import warnings

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from array_record.python.array_record_module import ArrayRecordWriter

from lmjax.config import load_config
from lmjax.data import cache as cache_lib
from lmjax.data import demo_shards as data_shards
from lmjax.data.sources import resolve_sources
from lmjax.errors import DataError

TEXTS = ["uno dos tres", "cuatro cinco", "seis siete ocho nueve"]


def config_for(tmp_path, glob, **data):
    extra = [f"data.{key}={value}" for key, value in data.items()]
    return load_config("gpt_tiny", [f"data.sources=['{glob}']", f"data.cache_dir={tmp_path / 'cache'}",
                                    "data.prepare_workers=1", *extra])


def texts(source):
    return [text for path in source.files for text in source.documents(path)]


def error_of(function, *args):
    with pytest.raises(DataError) as caught:
        function(*args)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def write_parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": pa.array(rows, pa.binary()).cast(pa.string(), safe=False)}), path)
    return path


@pytest.mark.parametrize("damage", ["footer cut", "empty"])
def test_a_damaged_parquet_names_the_file_at_check_and_at_read(tmp_path, damage):
    good = write_parquet(tmp_path / "es" / "000.parquet", [t.encode() for t in TEXTS])
    bad = write_parquet(tmp_path / "es" / "001.parquet", [t.encode() for t in TEXTS])
    bad.write_bytes(bad.read_bytes()[:-12] if damage == "footer cut" else b"")
    message = error_of(resolve_sources, config_for(tmp_path, f"{tmp_path}/es/*.parquet").data)
    assert str(bad) in message and str(good) not in message
    assert ("0 bytes" in message) == (damage == "empty")
    (source,) = resolve_sources(config_for(tmp_path, str(good)).data)
    source = type(source)(**{**source.__dict__, "files": (good, bad)})  # past the check: the read
    assert str(bad) in error_of(texts, source)


def jsonl_lines(bad_row):
    lines = [json.dumps({"text": t}).encode() for t in TEXTS]
    lines[bad_row - 1] = b'{"text": "caf\xe9 \xff ok"}'  # latin-1 e-acute, then a stray 0xff
    return b"\n".join(lines) + b"\n"


def write_format(path, data, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_bytes(data)
    elif fmt == "jsonl.zst":
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(data)
    elif fmt == "parquet":
        write_parquet(path, [json.loads(line.decode("latin-1"))["text"].encode("latin-1")
                             for line in data.splitlines()])
    else:
        writer = ArrayRecordWriter(str(path), "group_size:1")
        for line in data.splitlines():
            writer.write(line)
        writer.close()
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.zst", "parquet", "array_record"])
def test_invalid_utf8_is_replaced_and_counted_or_refused_with_file_row_and_offset(tmp_path, fmt):
    data = jsonl_lines(bad_row=2)
    path = write_format(tmp_path / "s" / f"a.{fmt}", data, fmt)
    (source,) = resolve_sources(config_for(tmp_path, str(path)).data)
    counts = {"rows": 0}
    with pytest.warns(UserWarning, match="replaced 2 invalid UTF-8 byte"):
        found = list(source.documents(path, counts))
    assert found == [TEXTS[0], "caf\ufffd \ufffd ok", TEXTS[2]]
    assert counts["invalid_utf8_bytes"] == 2
    (strict,) = resolve_sources(config_for(tmp_path, str(path), invalid_utf8="error").data)
    message = error_of(texts, strict)
    assert str(path) in message and "row 2" in message
    offset = int(message.split("byte offset ")[1].split()[0])
    within = {"jsonl": data.index(b"\xe9"), "jsonl.zst": data.index(b"\xe9"), "parquet": 3,
              "array_record": data.splitlines()[1].index(b"\xe9")}[fmt]
    assert offset == within


def test_invalid_utf8_in_the_manifest_and_refused_on_reuse_under_error(tmp_path):
    from lmjax.data import build_tokenizer

    path = write_format(tmp_path / "s" / "a.jsonl", jsonl_lines(bad_row=3) * 20, "jsonl")
    config = config_for(tmp_path, str(path), validation_fraction=0.4)
    with pytest.warns(UserWarning, match="invalid UTF-8"):  # the tokenizer's sample reads it too
        tokenizer = build_tokenizer(config.data, config.model.vocab_size)
    with pytest.warns(UserWarning, match="invalid UTF-8"):
        (cache,) = cache_lib.prepare_sources(config.data, resolve_sources(config.data), tokenizer, workers=1)
    assert cache.manifest["invalid_utf8_bytes"] == 40
    strict = config_for(tmp_path, str(path), validation_fraction=0.4, invalid_utf8="error")
    sources = resolve_sources(strict.data)  # the first row is valid: the check passes
    message = error_of(cache_lib.prepare_sources, strict.data, sources, tokenizer)
    assert str(path) in message and "40 invalid UTF-8" in message


@pytest.mark.parametrize("empty", ["0-byte zst", "empty zstd frame", "0-byte jsonl"])
def test_an_empty_file_is_an_empty_shard_not_a_schema(tmp_path, empty):
    fmt = "jsonl" if empty == "0-byte jsonl" else "jsonl.zst"
    blank = tmp_path / "s" / f"000.{fmt}"  # first in glob order
    write_format(tmp_path / "s" / f"001.{fmt}", jsonl_lines(bad_row=1).replace(b"\xe9 \xff", b""), fmt)
    if empty == "empty zstd frame":
        write_format(blank, b"", fmt)
    else:
        blank.write_bytes(b"")
    with pytest.warns(UserWarning, match=f"empty file.*{blank}"):
        (source,) = resolve_sources(config_for(tmp_path, f"{tmp_path}/s/*.{fmt}").data)
    assert texts(source) == ["caf ok", *TEXTS[1:]]


def test_a_source_of_only_empty_files_says_so(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.jsonl").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        message = error_of(resolve_sources, config_for(tmp_path, f"{tmp_path}/s/*.jsonl").data)
    assert "are empty" in message and "a.jsonl" in message


def test_invalid_utf8_in_a_text_shard_is_counted_or_refused_with_offset_and_line(tmp_path):
    data = b"uno dos\n\ncaf\xe9 \xff ok\n\ntres\n"
    path = tmp_path / "s" / "a.txt"
    path.parent.mkdir()
    path.write_bytes(data)
    (source,) = resolve_sources(config_for(tmp_path, str(path)).data)
    counts = {"rows": 0}
    with pytest.warns(UserWarning, match="replaced 2 invalid UTF-8 byte"):
        assert list(source.documents(path, counts)) == ["uno dos", "caf\ufffd \ufffd ok", "tres"]
    assert counts["invalid_utf8_bytes"] == 2
    (strict,) = resolve_sources(config_for(tmp_path, str(path), invalid_utf8="error").data)
    message = error_of(texts, strict)
    bad = data.index(b"\xe9")
    assert str(path) in message and f"byte offset {bad} (line 3)" in message
