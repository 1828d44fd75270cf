"""`data.sources` on a bucket: parquet and jsonl.zst shards uploaded to a fake `gs://` bucket
(fake-gcs-server on 127.0.0.1, the `bucket` fixture of tests/fake_gcs.py) resolve by glob,
filter and prepare into the same documents and tokens as the same shards on local disk, also
in spawned worker processes; the cache key follows a shard rewritten on the bucket, even one
rewritten to the same size within the same second (it holds the object's checksum)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from etils import epath
from fake_gcs import bucket  # noqa: F401  (the fixture)

from lmjax.config import load_config
from lmjax.data import build_tokenizer
from lmjax.data import cache as cache_lib
from lmjax.data import demo_shards as data_shards
from lmjax.data.sources import resolve_sources

FILTERS = {"es": "['language_score >= 0.7']", "ca": "['minhash_cluster_size <= 60']"}


def make_config(cache_dir, es_glob, ca_glob, workers=1):
    return load_config("gpt_tiny", [
        f"data.sources=[{{name: es, files: '{es_glob}', filters: {FILTERS['es']}}}, "
        f"{{name: ca, files: '{ca_glob}', filters: {FILTERS['ca']}}}]",
        f"data.cache_dir={cache_dir}", "data.validation_fraction=0.1",
        "data.tokenizer_train_bytes=100000", f"data.prepare_workers={workers}",
    ])


@pytest.fixture(scope="module")
def shards(tmp_path_factory, data_dir):
    """Two parquet shards of Spanish and two jsonl.zst shards of Catalan, on local disk."""
    root = tmp_path_factory.mktemp("shards")
    return root, data_shards.write_corpus(root, data_dir, 80, parts=2, languages=("es", "ca"))


def upload(local_root, remote_root):
    for path in sorted(local_root.rglob("*.*")):
        target = epath.Path(f"{remote_root}/{path.relative_to(local_root)}")
        target.write_bytes(path.read_bytes())


def streams(caches):
    return {c.source.name: {split: np.asarray(c.tokens(split)[:]) for split in cache_lib.SPLITS}
            for c in caches}


def test_bucket_shards_prepare_like_local_ones(bucket, shards, tmp_path):
    root, columns = shards
    upload(root, f"{bucket}/web")
    local = make_config(tmp_path / "cache", f"{root}/es/*.parquet", f"{root}/ca/*.jsonl.zst")
    remote = make_config(tmp_path / "cache", f"{bucket}/web/es/*.parquet", f"{bucket}/web/ca/*.jsonl.zst")
    tokenizer = build_tokenizer(local.data, local.model.vocab_size)

    sources = resolve_sources(remote.data)
    assert [str(p) for p in sources[0].files] == [f"{bucket}/web/es/000.parquet", f"{bucket}/web/es/001.parquet"]
    assert [s.format for s in sources] == ["parquet", "jsonl.zst"]
    anywhere = make_config(tmp_path / "cache", f"{bucket}/**/*.parquet", f"{bucket}/web/**/0*.jsonl.zst")
    assert [[str(p) for p in s.files] for s in resolve_sources(anywhere.data)] == [
        [str(p) for p in sources[0].files], [f"{bucket}/web/ca/000.jsonl.zst", f"{bucket}/web/ca/001.jsonl.zst"]]
    score = np.array(columns["es"]["language_score"])
    expected = [t for t, keep in zip(columns["es"]["text"], score >= 0.7) if keep]
    assert 0 < len(expected) < len(score)
    assert [t for p in sources[0].files for t in sources[0].documents(p)] == expected

    at_home = cache_lib.prepare_sources(local.data, resolve_sources(local.data), tokenizer)
    away = cache_lib.prepare_sources(remote.data, sources, tokenizer)
    assert [c.directory for c in away] != [c.directory for c in at_home]  # keyed by the bucket files
    for near, far in zip(at_home, away):
        for key in ("rows", "filtered_out", "duplicates", "train", "validation"):
            assert far.manifest[key] == near.manifest[key], key
        assert [s["file"] for s in far.manifest["shards"]] == [str(p) for p in far.source.files]
    assert away[0].manifest["filtered_out"] == len(score) - len(expected)
    got, want = streams(away), streams(at_home)
    for name in want:
        for split in cache_lib.SPLITS:
            np.testing.assert_array_equal(got[name][split], want[name][split])
    assert all(len(got[name]["train"]) > 0 for name in got)

    # an unchanged bucket is reused; a shard rewritten on it gives its source a new key
    again = cache_lib.prepare_sources(remote.data, resolve_sources(remote.data), tokenizer)
    assert [c.directory for c in again] == [c.directory for c in away]
    part = data_shards.split_columns(columns["es"], 2)[1]
    part["text"] = [text + " fin." for text in part["text"]]
    upload_parquet(tmp_path / "new.parquet", part, f"{bucket}/web/es/001.parquet")
    changed = cache_lib.prepare_sources(remote.data, resolve_sources(remote.data), tokenizer)
    assert changed[0].directory != away[0].directory and changed[1].directory == away[1].directory
    before, after = (sum(c.manifest[split]["bytes"] for split in cache_lib.SPLITS) for c in (away[0], changed[0]))
    assert after == before + len(" fin.") * sum(score[len(score) // 2:] >= 0.7)


def test_a_same_size_rewrite_on_the_bucket_changes_the_key(bucket, shards, tmp_path):
    """A bucket lists mtimes to the second: the key uses the object's checksum as well."""
    _, columns = shards
    target = f"{bucket}/web/es/000.parquet"
    keys = []
    for letter in "ab":
        part = {key: values[:10] for key, values in columns["es"].items()}
        part["text"] = [letter + text for text in part["text"]]
        size = upload_parquet(tmp_path / f"{letter}.parquet", part, target, compression="none")
        config = make_config(tmp_path / "cache", target, target)
        keys.append((size, cache_lib.source_key(config.data, resolve_sources(config.data)[0], "")))
    assert keys[0][0] == keys[1][0] and keys[0][1] != keys[1][1]


def upload_parquet(local, columns, target, **options):
    """Writes the columns as parquet locally, copies the file to the bucket; its size."""
    local.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), local, row_group_size=64, **options)
    epath.Path(target).write_bytes(local.read_bytes())
    return local.stat().st_size


def test_bucket_shards_prepare_in_worker_processes(bucket, shards, tmp_path):
    """Spawned tokenizing workers reach the bucket too (the same emulator, no credentials)."""
    root, _ = shards
    upload(root, f"{bucket}/web")
    local = make_config(tmp_path / "cache", f"{root}/es/*.parquet", f"{root}/ca/*.jsonl.zst")
    remote = make_config(tmp_path / "cache", f"{bucket}/web/es/*.parquet", f"{bucket}/web/ca/*.jsonl.zst",
                         workers=2)
    tokenizer = build_tokenizer(local.data, local.model.vocab_size)
    want = streams(cache_lib.prepare_sources(local.data, resolve_sources(local.data), tokenizer))
    away = cache_lib.prepare_sources(remote.data, resolve_sources(remote.data), tokenizer, workers=2)
    got = streams(away)
    for name in want:
        for split in cache_lib.SPLITS:
            np.testing.assert_array_equal(got[name][split], want[name][split])
    assert json.loads((away[0].directory / "manifest.json").read_text())["shards"][0]["file"].startswith("gs://")
