"""Paths the user gives that are the wrong kind of thing: a file where `data demo-shards` wants a
folder, a folder where a training text is wanted. Each is one line saying what to give."""

import pytest

from lmjax.cli import main
from lmjax.config import load_config
from lmjax.data.corpora import prepare_corpus
from lmjax.errors import DataError
from lmjax.tokenizers.base import read_corpus_bytes


def test_demo_shards_into_a_file_is_one_line_exit_2(tmp_path, capsys):
    target = tmp_path / "shards.txt"
    target.write_text("keep me")
    assert main(["data", "demo-shards", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(target) in err and "is a file, not a folder" in err
    assert target.read_text() == "keep me"


def test_demo_shards_without_the_offline_corpora_names_the_missing_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LMJAX_DATA_DIR", str(tmp_path / "nothing"))
    assert main(["data", "demo-shards", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(tmp_path / "nothing") in err and "missing" in err


def test_a_directory_as_the_corpus_says_it_is_one(tmp_path):
    (tmp_path / "texts").mkdir()
    config = load_config("gpt_tiny", [f"data.cache_dir={tmp_path / 'cache'}", f"data.corpus={tmp_path / 'texts'}"])
    with pytest.raises(DataError, match=r"is the directory .*texts, not a text file: .*data.sources"):
        prepare_corpus(config.data)


def test_a_directory_as_tokenizer_training_text_says_it_is_one(tmp_path):
    with pytest.raises(DataError, match=r"is a directory; give the text files in it"):
        read_corpus_bytes(tmp_path)
