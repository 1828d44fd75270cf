"""What the data pipeline and the models rely on, for every kind: one interface, and
`load(dir)` rebuilding whatever was saved, or saying in one line why it cannot."""

import json

import pytest

from lmjax.errors import DataError
from lmjax.tokenizers import KINDS, Tokenizer, load, train_tokenizer

TEXT = "KING RICHARD III:\nNow is the winter of our discontent\n"


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "excerpt.txt"
    path.write_text((data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:150_000])
    return path


@pytest.fixture(scope="module", params=sorted(KINDS))
def trained(request, corpus):
    return train_tokenizer(request.param, [corpus], vocab_size=500)


def test_every_kind_has_the_interface(trained):
    assert isinstance(trained, Tokenizer) and trained.vocab_size == 500
    assert isinstance(trained.eos_id, int) and 0 <= trained.eos_id < 500
    texts = [TEXT, "Hark!"]
    batch = trained.encode_batch(texts)
    assert batch == [trained.encode(text) for text in texts]
    assert all(0 <= i < 500 for ids in batch for i in ids)
    assert trained.decode_batch(batch) == [trained.decode(ids) for ids in batch]
    eos = next(token for token, i in trained.special_tokens.items() if i == trained.eos_id)
    assert trained.encode(eos, allowed_special=[eos]) == [trained.eos_id]
    with pytest.raises(DataError, match="not a special token"):
        trained.encode(TEXT, allowed_special=["<nope>"])
    with pytest.raises(DataError, match="outside this tokenizer's vocabulary"):
        trained.decode([500])


def test_save_then_load_rebuilds_the_same_tokenizer(trained, tmp_path):
    trained.save(tmp_path)
    meta = json.loads((tmp_path / "lmjax_tokenizer.json").read_text())
    assert meta["kind"] == trained.kind and meta["vocab_size"] == 500
    assert not any(path.suffix in {".pkl", ".pickle"} for path in tmp_path.iterdir())
    rebuilt = load(tmp_path)
    assert type(rebuilt) is type(trained)
    assert rebuilt.encode(TEXT) == trained.encode(TEXT)
    assert rebuilt.special_tokens == trained.special_tokens


def test_load_explains_what_is_wrong_in_one_line(tmp_path, data_dir):
    pytest.importorskip("tokenizers")
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "tokenizer.json").write_text(json.dumps({"model": {"type": "Morfessor"}}))
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "tokenizer.json").write_text(json.dumps({"kind": "morfessor", "format_version": 1}))
    future = tmp_path / "future"
    future.mkdir()
    (future / "tokenizer.json").write_text(json.dumps({"kind": "bpe", "format_version": 99}))
    cases = [
        (hf_dir, "cannot be read by the tokenizers library"),
        (unknown, "unknown tokenizer kind 'morfessor'"),
        (future, "format_version 99"),
        (data_dir / "gpt2_bpe", "not an lmjax tokenizer directory"),
        (tmp_path / "missing", "does not exist"),
    ]
    for directory, message in cases:
        with pytest.raises(DataError, match=message) as err:
            load(directory)
        assert "\n" not in str(err.value)
