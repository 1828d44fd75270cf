"""`hf://` sources, offline: `datasets.load_dataset` is replaced by a stand-in that records its
arguments and streams local FineWeb-2-style rows through a real `datasets.IterableDataset`,
so nothing is downloaded. Checks the syntax, the filters, the text field, the document limit,
the cache key, the one-line errors, and that the prepared cache equals the same rows read
from a local jsonl file."""

import sys

import numpy as np
import pytest

from lmjax.config import load_config
from lmjax.data import build_tokenizer
from lmjax.data import cache as cache_lib
from lmjax.data import demo_shards as data_shards
from lmjax.data import hf_stream
from lmjax.data.sources import resolve_sources
from lmjax.errors import DataError

datasets = pytest.importorskip("datasets", reason="the hf-data extra's datasets streams hf:// sources")

SPEC = "hf://HuggingFaceFW/fineweb-2/spa_Latn"
FILTER = "language_score >= 0.7"
LIMIT = 30


@pytest.fixture(scope="module")
def rows(data_dir):
    columns = data_shards.rows("es", data_shards.documents(data_dir, "es", 120))
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


@pytest.fixture
def hub(monkeypatch, rows):
    """datasets.load_dataset answering from `rows`; every call's arguments are recorded."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []

    def load_dataset(path, name=None, *, split=None, revision=None, streaming=False):
        calls.append({"path": path, "name": name, "split": split, "revision": revision, "streaming": streaming})

        def generate(rows):
            yield from rows

        return datasets.IterableDataset.from_generator(generate, gen_kwargs={"rows": rows})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def config(tmp_path, *entries, workers=1):
    return load_config("gpt_tiny", [
        f"data.sources=[{', '.join(entries)}]", f"data.cache_dir={tmp_path / 'cache'}",
        "data.validation_fraction=0.1", "data.tokenizer_train_bytes=100000", f"data.prepare_workers={workers}"])


def texts(source):
    return [text for path in source.files for text in source.documents(path)]


def test_syntax_round_trips_and_bad_specs_fail_in_one_line():
    stream = hf_stream.parse(f"{SPEC}?split=validation&revision=abc123&limit=5", "files")
    assert stream == hf_stream.HfStream("HuggingFaceFW/fineweb-2", "spa_Latn", "validation", "abc123", 5)
    assert hf_stream.parse(str(stream), "files") == stream
    assert hf_stream.parse("hf://stanfordnlp/imdb", "files") == hf_stream.HfStream("stanfordnlp/imdb")
    for bad, expected in [("hf://onlyorg", "not a streamed dataset"), ("hf://a/b/c/d", "not a streamed dataset"),
                          ("hf://datasets/a/b", "not a streamed dataset"), (f"{SPEC}?limit=0", "positive"),
                          (f"{SPEC}?limit=ten", "positive"), (f"{SPEC}?rows=3", "unknown option(s) rows")]:
        with pytest.raises(DataError) as caught:
            hf_stream.parse(bad, "data.sources[0].files")
        assert expected in str(caught.value) and "\n" not in str(caught.value), bad


def test_filters_text_field_and_limit(tmp_path, hub, rows):
    (source,) = resolve_sources(config(
        tmp_path, f"{{files: '{SPEC}?split=train&revision=v1&limit={LIMIT}', filters: ['{FILTER}']}}").data)
    assert (source.name, source.format, source.text_field) == ("spa_Latn", "hf", "text")
    kept = [row["text"] for row in rows if row["language_score"] >= 0.7]
    assert LIMIT < len(kept) < len(rows)
    counts = {"rows": 0}
    assert list(source.documents(source.files[0], counts)) == kept[:LIMIT]
    last = next(i for i, row in enumerate(rows) if row["text"] == kept[LIMIT - 1])
    assert counts["rows"] == last + 1  # the stream is not read past the limit-th document
    assert hub[-1] == {"path": "HuggingFaceFW/fineweb-2", "name": "spa_Latn", "split": "train",
                       "revision": "v1", "streaming": True}

    (whole,) = resolve_sources(config(tmp_path, f"{{files: '{SPEC}', text_field: url}}").data)
    assert texts(whole) == [row["url"] for row in rows]  # no limit: the whole split, any column
    with pytest.raises(DataError, match="'content' is not a column.*text, id, dump"):
        resolve_sources(config(tmp_path, f"{{files: '{SPEC}', text_field: content}}").data)
    with pytest.raises(DataError, match="'quality'"):
        resolve_sources(config(tmp_path, f"{{files: '{SPEC}', filters: ['quality > 1']}}").data)
    with pytest.raises(DataError, match="drop data.sources.0..format"):
        resolve_sources(config(tmp_path, f"{{files: '{SPEC}', format: parquet}}").data)


def test_the_cache_equals_the_same_rows_from_a_local_jsonl(tmp_path, hub, rows):
    remote = config(tmp_path, f"{{name: es, files: '{SPEC}?limit={LIMIT}', filters: ['{FILTER}']}}")
    (source,) = resolve_sources(remote.data)
    read = [row for row in rows[:next(i for i, row in enumerate(rows) if row["text"] ==
                                      list(source.documents(source.files[0]))[-1]) + 1]]
    data_shards.write_jsonl(tmp_path / "es.jsonl", {key: [row[key] for row in read] for key in rows[0]}, codec=None)
    local = config(tmp_path, f"{{name: es, files: '{tmp_path}/es.jsonl', filters: ['{FILTER}']}}")
    tokenizer = build_tokenizer(local.data, local.model.vocab_size)

    (far,) = cache_lib.prepare_sources(remote.data, [source], tokenizer)
    (near,) = cache_lib.prepare_sources(local.data, resolve_sources(local.data), tokenizer)
    for key in ("rows", "filtered_out", "duplicates", "train", "validation"):
        assert far.manifest[key] == near.manifest[key], key
    assert far.manifest["train"]["documents"] + far.manifest["validation"]["documents"] == LIMIT
    assert far.manifest["shards"][0]["file"] == f"{SPEC}?split=train&limit={LIMIT}"
    for split in cache_lib.SPLITS:
        np.testing.assert_array_equal(np.asarray(far.tokens(split)[:]), np.asarray(near.tokens(split)[:]))

    # reused without opening the stream again; the key follows every part of the description
    opened = len(hub)
    again = resolve_sources(remote.data)
    assert len(hub) == opened + 1  # resolving reads the schema once, nothing more
    (reused,) = cache_lib.prepare_sources(remote.data, again, tokenizer)
    assert reused.directory == far.directory and len(hub) == opened + 1
    fingerprint = far.manifest["tokenizer"]
    key = cache_lib.source_key(remote.data, source, fingerprint)
    for variant in [f"{SPEC}?limit={LIMIT + 1}", f"{SPEC}?split=test&limit={LIMIT}",
                    f"{SPEC}?revision=main&limit={LIMIT}", f"hf://HuggingFaceFW/fineweb-2/cat_Latn?limit={LIMIT}",
                    f"hf://HuggingFaceFW/fineweb/spa_Latn?limit={LIMIT}"]:
        (other,) = resolve_sources(config(tmp_path, f"{{name: es, files: '{variant}', filters: ['{FILTER}']}}").data)
        assert cache_lib.source_key(remote.data, other, fingerprint) != key, variant
    (unfiltered,) = resolve_sources(config(tmp_path, f"{{name: es, files: '{SPEC}?limit={LIMIT}'}}").data)
    assert cache_lib.source_key(remote.data, unfiltered, fingerprint) != key


def test_without_datasets_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(DataError) as caught:
        resolve_sources(config(tmp_path, f"'{SPEC}'").data)
    message = str(caught.value)
    assert "\n" not in message and "lmjax[hf-data]" in message and "datasets" in message


def test_a_failing_hub_is_one_line(tmp_path, monkeypatch):
    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub\nretry later")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(DataError) as caught:
        resolve_sources(config(tmp_path, f"'{SPEC}'").data)
    assert "\n" not in str(caught.value) and "Couldn't reach the Hub" in str(caught.value)
