"""The token cache: streams equal the documents tokenized by hand, the manifest's counts add
up, an unchanged source is reused, a changed shard rebuilds, an interrupted prepare resumes
with the missing shards only, and exact duplicates are dropped and counted."""

import hashlib
import json
import os

import numpy as np
import pytest

from lmjax.config import load_config
from lmjax.data import demo_shards as data_shards
from lmjax.data import build_tokenizer
from lmjax.data import cache as cache_lib
from lmjax.data.sources import resolve_sources

FRACTION = 0.1


def make_config(tmp_path, shards):
    return load_config("gpt_tiny", [
        f"data.sources=[{{name: es, files: '{shards}/es/*.parquet'}}, {{name: ca, files: '{shards}/ca/*.jsonl.zst'}}]",
        f"data.cache_dir={tmp_path / 'cache'}", f"data.validation_fraction={FRACTION}",
        "data.tokenizer_train_bytes=200000", "data.prepare_workers=1",
    ])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("shards")
    return root, data_shards.write_corpus(root, data_dir, 90, parts=3, languages=("es", "ca"))


@pytest.fixture(scope="module")
def tokenizer(corpus, tmp_path_factory):
    config = make_config(tmp_path_factory.mktemp("tok"), corpus[0])
    return build_tokenizer(config.data, config.model.vocab_size)


def prepare(config, tokenizer):
    return cache_lib.prepare_sources(config.data, resolve_sources(config.data), tokenizer, workers=1)


def held_out(text):
    """The split rule restated: bits 32.. of the document's blake2b-64 hash, per million."""
    digest = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return (digest >> 32) % 1_000_000 < FRACTION * 1_000_000


def expected_stream(texts, tokenizer, validation):
    ids = [[*tokenizer.encode(t), tokenizer.eos_id] for t in texts if held_out(t) == validation]
    return np.array([i for doc in ids for i in doc], np.int32)


def test_streams_and_manifest_match_documents_tokenized_by_hand(tmp_path, corpus, tokenizer):
    root, columns = corpus
    caches = prepare(make_config(tmp_path, root), tokenizer)
    for cache, lang in zip(caches, ("es", "ca")):
        texts = columns[lang]["text"]
        for split, validation in (("train", False), ("validation", True)):
            expected = expected_stream(texts, tokenizer, validation)
            assert np.array_equal(cache.tokens(split)[:], expected), (lang, split)
            assert cache.manifest[split]["tokens"] == len(expected)
        assert 0 < cache.manifest["validation"]["documents"] < len(texts)
        shards = cache.manifest["shards"]
        assert [s["documents"] for s in shards] == [len(p["text"]) for p in data_shards.split_columns(columns[lang], 3)]
        assert sum(s["tokens"] for s in shards) == sum(cache.manifest[s]["tokens"] for s in ("train", "validation"))
        assert cache.manifest["duplicates"] == 0


def test_reused_when_unchanged_rebuilt_when_a_shard_changes(tmp_path, corpus, tokenizer, monkeypatch):
    root, columns = corpus
    config = make_config(tmp_path, root)
    first = prepare(config, tokenizer)
    calls = []
    original = cache_lib.tokenize_shard
    monkeypatch.setattr(cache_lib, "tokenize_shard", lambda job: calls.append(job[1]) or original(job))
    again = prepare(config, tokenizer)
    assert calls == [] and [c.directory for c in again] == [c.directory for c in first]

    shards = tmp_path / "changed"
    for lang in ("es", "ca"):
        (shards / lang).mkdir(parents=True)
        for path in (root / lang).iterdir():
            (shards / lang / path.name).write_bytes(path.read_bytes())
    config = make_config(tmp_path, shards)
    copied = prepare(config, tokenizer)  # new paths: a new key, all shards tokenized
    calls.clear()
    part = data_shards.split_columns(columns["es"], 3)[1]
    data_shards.write_parquet(shards / "es" / "001.parquet", {k: v[:-5] for k, v in part.items()})
    changed = prepare(config, tokenizer)
    assert calls == [0, 1, 2]  # the es source is rebuilt, ca reused
    assert changed[1].directory == copied[1].directory and changed[0].directory != copied[0].directory
    assert sum(s["documents"] for s in changed[0].manifest["shards"]) == len(columns["es"]["text"]) - 5


def test_an_interrupted_prepare_resumes_with_the_missing_shards(tmp_path, corpus, tokenizer, monkeypatch):
    root, _ = corpus
    config = make_config(tmp_path, root)
    original = cache_lib.tokenize_shard

    def dies_on_third(job):
        if job[1] == 2:
            raise KeyboardInterrupt("killed")
        return original(job)

    monkeypatch.setattr(cache_lib, "tokenize_shard", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        prepare(config, tokenizer)
    calls = []
    monkeypatch.setattr(cache_lib, "tokenize_shard", lambda job: calls.append(job[1]) or original(job))
    resumed = prepare(config, tokenizer)
    assert calls == [2, 0, 1, 2]  # es's third shard, then all of ca
    reference = prepare(make_config(tmp_path / "fresh", root), tokenizer)
    for a, b in zip(resumed, reference):
        assert np.array_equal(a.tokens("train")[:], b.tokens("train")[:])


def test_exact_duplicates_are_dropped_and_counted(tmp_path, corpus, tokenizer):
    _, columns = corpus
    es = columns["es"]
    repeated = [0, 3, 3, 17]  # document 3 twice more, across shards
    data_shards.write_parquet(tmp_path / "d" / "es" / "000.parquet", es)
    data_shards.write_parquet(tmp_path / "d" / "es" / "001.parquet", {k: [v[i] for i in repeated] for k, v in es.items()})
    data_shards.write_jsonl(tmp_path / "d" / "ca" / "000.jsonl.zst", columns["ca"])
    (cache, _) = prepare(make_config(tmp_path, tmp_path / "d"), tokenizer)
    assert cache.manifest["duplicates"] == len(repeated)
    assert cache.manifest["rows"] == len(es["text"]) + len(repeated)
    assert np.array_equal(cache.tokens("train")[:], expected_stream(es["text"], tokenizer, False))
    assert json.loads((cache.directory / "manifest.json").read_text()) == cache.manifest


def test_two_workers_write_what_one_does(tmp_path, corpus, tokenizer):
    root, _ = corpus
    one = prepare(make_config(tmp_path / "one", root), tokenizer)
    config = make_config(tmp_path / "two", root)
    two = cache_lib.prepare_sources(config.data, resolve_sources(config.data), tokenizer, workers=2)
    for a, b in zip(one, two):
        for split in ("train", "validation"):
            assert np.array_equal(a.tokens(split)[:], b.tokens(split)[:])
        assert os.path.basename(a.directory) == os.path.basename(b.directory)


def test_prepare_command_prints_each_source_manifest(tmp_path, corpus, capsys):
    from lmjax.cli import main
    from lmjax.config import to_yaml

    root, columns = corpus
    path = tmp_path / "mix.yaml"
    path.write_text(to_yaml(make_config(tmp_path, root)))
    assert main(["data", "prepare", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for lang in ("es", "ca"):
        (row,) = [line.split() for line in lines if line.startswith(lang + " ")]
        assert int(row[1].replace(",", "")) == len(columns[lang]["text"])  # rows read
    assert main(["data", "prepare", "gpt_tiny"]) == 2
    assert "has no data.sources" in capsys.readouterr().err


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_every_cache_file_and_folder_follows_the_umask(tmp_path, corpus, tokenizer, mask):
    old = os.umask(mask)
    try:
        prepare(make_config(tmp_path, corpus[0]), tokenizer)
    finally:
        os.umask(old)
    paths = list((tmp_path / "cache" / "token_cache").rglob("*"))
    assert any(p.name == "manifest.json" for p in paths) and any(p.suffix == ".tokens" for p in paths)
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in paths}
    wrong = {p: oct(m) for p, m in modes.items()
             if m != (0o777 if (tmp_path / p).is_dir() else 0o666) & ~mask}
    assert wrong == {}
