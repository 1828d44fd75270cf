"""`data.sources`: every format reads the same rows, filters keep exactly the rows they should
(checked against numpy masks over the made-up metadata), and each bad input the issue lists
fails with one line that names the problem."""

import gzip

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordWriter

from lmjax.config import load_config
from lmjax.data import demo_shards as data_shards
from lmjax.data.sources import resolve_sources
from lmjax.errors import ConfigError, DataError


def sources_config(tmp_path, *entries, **data):
    values = ", ".join(entries)
    extra = [f"data.{key}={value}" for key, value in data.items()]
    return load_config("gpt_tiny", [f"data.sources=[{values}]", f"data.cache_dir={tmp_path / 'cache'}", *extra])


def texts(source):
    return [text for path in source.files for text in source.documents(path)]


@pytest.fixture(scope="module")
def columns(data_dir):
    return {lang: data_shards.rows(lang, data_shards.documents(data_dir, lang, 120)) for lang in ("es", "ca")}


def test_every_format_reads_the_same_documents(tmp_path, columns):
    es = columns["es"]
    data_shards.write_parquet(tmp_path / "f" / "a.parquet", es)
    data_shards.write_jsonl(tmp_path / "f" / "a.jsonl", es, codec=None)
    (tmp_path / "f" / "a.jsonl.gz").write_bytes(gzip.compress(data_shards.jsonl_bytes(es)))
    data_shards.write_jsonl(tmp_path / "f" / "a.jsonl.zst", es)
    (tmp_path / "f" / "a.txt").write_text("\n\n".join(es["text"]) + "\n")
    writer = ArrayRecordWriter(str(tmp_path / "f" / "a.array_record"), "group_size:1")
    for line in data_shards.jsonl_bytes(es).splitlines():
        writer.write(line)
    writer.close()
    for ext, fmt in [("parquet", "parquet"), ("jsonl", "jsonl"), ("jsonl.gz", "jsonl.gz"),
                     ("jsonl.zst", "jsonl.zst"), ("txt", "text"), ("array_record", "array_record")]:
        (source,) = resolve_sources(sources_config(tmp_path, f"'{tmp_path}/f/a.{ext}'").data)
        assert source.format == fmt
        assert texts(source) == es["text"], fmt


def test_filters_keep_exactly_the_rows_they_should(tmp_path, columns):
    es = columns["es"]
    for index, part in enumerate(data_shards.split_columns(es, 3)):
        data_shards.write_parquet(tmp_path / "es" / f"{index}.parquet", part)
    config = sources_config(
        tmp_path, f"{{files: '{tmp_path}/es/*.parquet', filters: ['language_score >= 0.8', "
        "'minhash_cluster_size <= 50']}")
    (source,) = resolve_sources(config.data)
    score, cluster = np.array(es["language_score"]), np.array(es["minhash_cluster_size"])
    mask = (score >= 0.8) & (cluster <= 50)
    assert 0 < mask.sum() < len(mask)
    assert texts(source) == [text for text, kept in zip(es["text"], mask) if kept]
    assert source.name == "es" and len(source.files) == 3


def test_language_filter_on_a_mixed_jsonl_zst_shard(tmp_path, columns):
    both = {key: columns["es"][key] + columns["ca"][key] for key in columns["es"]}
    data_shards.write_jsonl(tmp_path / "mixed.jsonl.zst", both)
    config = sources_config(tmp_path, f"{{files: '{tmp_path}/mixed.jsonl.zst', filters: ['language == \"cat\"']}}")
    (source,) = resolve_sources(config.data)
    assert texts(source) == columns["ca"]["text"]


def test_a_one_source_config_is_one_glob(tmp_path, columns):
    data_shards.write_parquet(tmp_path / "web" / "spa_Latn" / "000.parquet", columns["es"])
    (source,) = resolve_sources(sources_config(tmp_path, f"'{tmp_path}/web/spa_Latn/*.parquet'").data)
    assert (source.name, source.text_field, source.weight, source.filters) == ("spa_Latn", "text", 1.0, ())


@pytest.fixture
def shard(tmp_path, columns):
    return data_shards.write_parquet(tmp_path / "es" / "000.parquet", columns["es"])


def error_of(function, *args, kind=DataError):
    with pytest.raises(kind) as caught:
        function(*args)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_glob_matching_nothing(tmp_path):
    config = sources_config(tmp_path, f"'{tmp_path}/nothing/*.parquet'")
    assert "matches no file" in error_of(resolve_sources, config.data)


def test_missing_text_field_lists_the_columns(tmp_path, shard):
    config = sources_config(tmp_path, f"{{files: '{shard}', text_field: content}}")
    message = error_of(resolve_sources, config.data)
    assert "'content'" in message and "language_score, minhash_cluster_size" in message


def test_filter_on_a_column_that_does_not_exist(tmp_path, shard):
    config = sources_config(tmp_path, f"{{files: '{shard}', filters: ['quality > 3']}}")
    message = error_of(resolve_sources, config.data)
    assert "'quality'" in message and "text, id, dump" in message


def test_unreadable_filter(tmp_path, shard):
    config = sources_config(tmp_path, f"{{files: '{shard}', filters: ['language_score is high']}}")
    assert "cannot read filter" in error_of(resolve_sources, config.data, kind=ConfigError)


@pytest.mark.parametrize("weights, expected", [((-1, 1), "must be a finite number >= 0"),
                                               ((0, 0), "every weight is 0")])
def test_bad_weights(tmp_path, weights, expected):
    entries = [f"{{files: a{i}.parquet, weight: {w}}}" for i, w in enumerate(weights)]
    assert expected in error_of(sources_config, tmp_path, *entries, kind=ConfigError)


def test_truncated_zstd_names_the_file_and_row(tmp_path, data_dir):
    catalan = data_shards.rows("ca", data_shards.documents(data_dir, "ca"))
    path = data_shards.write_jsonl(tmp_path / "ca" / "000.jsonl.zst", catalan)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (source,) = resolve_sources(sources_config(tmp_path, f"'{path}'").data)
    message = error_of(texts, source)
    assert str(path) in message and "truncated" in message
    row = int(message.split(" at row ")[1].split(":")[0])
    assert 1 < row < len(catalan["text"])


def test_mixed_schemas_within_one_source(tmp_path, columns):
    es = columns["es"]
    data_shards.write_parquet(tmp_path / "es" / "000.parquet", es)
    data_shards.write_parquet(tmp_path / "es" / "001.parquet", {"text": es["text"], "id": es["id"]})
    config = sources_config(tmp_path, f"'{tmp_path}/es/*.parquet'")
    message = error_of(resolve_sources, config.data)
    assert "mixes schemas" in message and "001.parquet" in message


def test_globs_over_fineweb2s_layout_are_named_after_the_folder_that_differs(tmp_path, columns):
    for lang in ("spa_Latn", "cat_Latn"):
        data_shards.write_parquet(tmp_path / "data" / lang / "train" / "000_00000.parquet", columns["es"])
    data_shards.write_parquet(tmp_path / "other" / "train" / "a.parquet", columns["es"])
    data_shards.write_parquet(tmp_path / "other" / "train" / "b.parquet", columns["es"])
    globs = [f"'{tmp_path}/data/spa_Latn/train/*.parquet'", f"'{tmp_path}/data/cat_Latn/train/*.parquet'"]
    assert [s.name for s in resolve_sources(sources_config(tmp_path, *globs).data)] == ["spa_Latn", "cat_Latn"]
    # the same folders all the way down: the index still tells them apart
    same = [f"'{tmp_path}/other/train/a*.parquet'", f"'{tmp_path}/other/train/b*.parquet'"]
    assert [s.name for s in resolve_sources(sources_config(tmp_path, *same).data)] == ["train_0", "train_1"]
    named = [f"{{name: es, files: '{tmp_path}/data/spa_Latn/train/*.parquet'}}", globs[1]]
    assert [s.name for s in resolve_sources(sources_config(tmp_path, *named).data)] == ["es", "train"]
