"""The tfds text-corpus builder: documents, the 90/10 split, where data goes, and bad corpora."""

import subprocess
import sys
import textwrap

import pytest
import tensorflow_datasets as tfds

from lmjax.config import load_config
from lmjax.data.corpora import TINY_SHAKESPEARE_URL, prepare_corpus
from lmjax.data.text import decode_corpus, split_documents, train_validation_split
from lmjax.errors import DataError


def make_config(tmp_path, *overrides):
    return load_config(
        "gpt_tiny",
        [f"data.cache_dir={tmp_path / 'cache'}", f"data.data_dir={tmp_path / 'data'}",
         "data.download=false", *overrides],
    )


def texts(source):
    return [record["text"].decode("utf-8") for record in source]


def test_documents_are_separated_by_blank_lines():
    text = "\ufeffa\r\nb\r\n\r\n  c\n \t\n\n\nd\n"
    assert split_documents(decode_corpus(text.encode(), "t", "error")) == ["a\nb", "  c", "d"]


def test_split_falls_on_the_document_boundary_nearest_ninety_percent():
    documents = ["x" * 10] * 8 + ["y" * 15, "z" * 5]  # boundaries at 80 and 95: 95 is nearer 90
    train, validation = train_validation_split(documents)
    assert train == documents[:9] and validation == ["z" * 5]
    assert train_validation_split(["only"]) == (["only"], [])


def test_file_corpus_is_prepared_under_the_cache_dir(tmp_path):
    corpus = tmp_path / "data" / "mini.txt"
    corpus.parent.mkdir()
    corpus.write_text("".join(f"document {i}\nline two\n\n" for i in range(10)))
    prepared = prepare_corpus(make_config(tmp_path, f"data.corpus={corpus}").data)
    assert texts(prepared.documents("train")) == [f"document {i}\nline two" for i in range(9)]
    assert texts(prepared.documents("validation")) == ["document 9\nline two"]
    assert sorted(p.name for p in corpus.parent.iterdir()) == ["mini.txt"]  # nothing beside the corpus
    assert list((tmp_path / "cache" / "tfds" / "text_corpus").glob("mini-*/1.0.0/*.array_record*"))


def test_corpus_path_may_be_relative_to_the_data_dir(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rel.txt").write_text("one\n\ntwo\n")
    prepared = prepare_corpus(make_config(tmp_path, "data.corpus=rel.txt").data)
    assert texts(prepared.documents("validation")) == ["two"]


def test_an_edited_file_is_prepared_afresh(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("old\n\nold\n")
    config = make_config(tmp_path, f"data.corpus={corpus}")
    first = prepare_corpus(config.data).name
    corpus.write_text("new\n\nnew\n")
    prepared = prepare_corpus(config.data)
    assert prepared.name != first and texts(prepared.documents("train")) == ["new"]


def test_tiny_shakespeare_splits_like_nanogpt(data_dir, tmp_path):
    config = load_config("gpt_tiny", [f"data.data_dir={data_dir}", f"data.cache_dir={tmp_path}", "data.download=false"])
    prepared = prepare_corpus(config.data)
    train, validation = (texts(prepared.documents(split)) for split in ("train", "validation"))
    assert train[0] == "First Citizen:\nBefore we proceed any further, hear me speak."
    chars = [sum(map(len, docs)) for docs in (train, validation)]
    assert chars[0] / sum(chars) == pytest.approx(0.9, abs=0.001)
    assert not list(tmp_path.glob("**/input.txt"))  # read in place, never copied


def test_missing_file_corpus(tmp_path):
    with pytest.raises(DataError, match="neither a known corpus .* nor a file"):
        prepare_corpus(make_config(tmp_path, f"data.corpus={tmp_path / 'absent.txt'}").data)


def test_missing_tiny_shakespeare_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match=r"not found at .*tinyshakespeare/input.txt: put https://"):
        prepare_corpus(make_config(tmp_path).data)
    assert not (tmp_path / "cache").exists()


def test_absent_tiny_shakespeare_is_fetched_by_the_download_manager(data_dir, tmp_path, monkeypatch):
    def download(manager, url):
        assert url == TINY_SHAKESPEARE_URL
        return data_dir / "tinyshakespeare" / "input.txt"  # what a real download would fetch

    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    prepared = prepare_corpus(make_config(tmp_path, "data.download=true").data)
    assert texts(prepared.documents("validation"))[0].startswith("KATHARINA")


def test_failed_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    def download(manager, url):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    with pytest.raises(DataError, match=r"could not download .*\(ConnectionError\); put the file at <data dir>/tiny"):
        prepare_corpus(make_config(tmp_path, "data.download=true").data)


@pytest.mark.parametrize("content", [b"", b"  \n\n \t\n"])
def test_empty_corpus(tmp_path, content):
    corpus = tmp_path / "empty.txt"
    corpus.write_bytes(content)
    with pytest.raises(DataError, match="is empty"):
        prepare_corpus(make_config(tmp_path, f"data.corpus={corpus}").data)


def test_one_document_has_no_validation_split(tmp_path):
    corpus = tmp_path / "one.txt"
    corpus.write_text("a single document\nof two lines\n")
    prepared = prepare_corpus(make_config(tmp_path, f"data.corpus={corpus}").data)
    with pytest.raises(DataError, match="no validation documents"):
        prepared.documents("validation")


@pytest.fixture
def bad_utf8(tmp_path):
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(b"good text\n\nbad \xff\xfe bytes\n\nmore\n")
    return corpus


def test_invalid_utf8_is_replaced_with_a_warning(tmp_path, bad_utf8):
    with pytest.warns(UserWarning, match="replaced 2 invalid UTF-8 byte"):
        prepared = prepare_corpus(make_config(tmp_path, f"data.corpus={bad_utf8}").data)
    assert "bad \ufffd\ufffd bytes" in texts(prepared.documents("train"))


def test_invalid_utf8_error_names_the_byte_offset_even_when_prepared(tmp_path, bad_utf8):
    with pytest.warns(UserWarning):
        prepare_corpus(make_config(tmp_path, f"data.corpus={bad_utf8}").data)
    with pytest.raises(DataError, match=r"not valid UTF-8: byte offset 15 \(line 3\)"):
        prepare_corpus(make_config(tmp_path, f"data.corpus={bad_utf8}", "data.invalid_utf8=error").data)


def test_preparing_reading_and_batching_never_import_tensorflow(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("alpha beta\n\ngamma delta\n")
    script = textwrap.dedent(f"""
        import sys
        from lmjax.config import load_config
        from lmjax.data import build_tokenizer, make_batches, prepare_corpus
        from lmjax.objectives import make_objective
        config = load_config("gpt_tiny", ["data.corpus={corpus}", "data.cache_dir={tmp_path / 'cache'}"])
        assert prepare_corpus(config.data).documents("train")[0]["text"] == b"alpha beta"
        tokenizer = build_tokenizer(config.data, config.model.vocab_size)
        next(make_batches(config.data, config.train.global_batch_size, tokenizer, make_objective("causal_lm", pad_id=tokenizer.pad_id), "train"))
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
