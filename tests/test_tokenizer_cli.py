"""`lmjax tokenizer train/encode`: what is saved is what `load` rebuilds, errors are one line."""

import io

import pytest

from lmjax.cli import main
from lmjax.tokenizers import load


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "excerpt.txt"
    path.write_text((data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:100_000])
    return path


@pytest.mark.parametrize(
    "kind, vocab_size, extra",
    [("bpe", 400, []), ("wordpiece", 300, ["--lowercase"]), ("sentencepiece", 400, ["--extra-ids", "4"])],
)
def test_train_then_encode(kind, vocab_size, extra, corpus, tmp_path, capsys, monkeypatch):
    out = tmp_path / kind
    assert main(["tokenizer", "train", "--kind", kind, "--vocab-size", str(vocab_size), "--out", str(out),
                 *extra, str(corpus)]) == 0
    tokenizer = load(out)
    assert tokenizer.kind == kind and tokenizer.vocab_size == vocab_size
    capsys.readouterr()
    text = "Before we proceed any further, hear me speak.\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))
    assert main(["tokenizer", "encode", "--tokenizer", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(i) for i in tokenizer.encode(text)]


def test_encode_reads_non_utf8_files_as_bytes_for_bpe(corpus, tmp_path, capsys):
    main(["tokenizer", "train", "--kind", "bpe", "--vocab-size", "300", "--out", str(tmp_path / "bpe"), str(corpus)])
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("año".encode("latin-1"))
    capsys.readouterr()
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "bpe"), str(latin1)]) == 0
    ids = [int(i) for i in capsys.readouterr().out.split()]
    assert load(tmp_path / "bpe").decode_bytes(ids) == latin1.read_bytes()


def test_errors_are_one_line(corpus, tmp_path, capsys):
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "missing")]) == 2
    train = ["tokenizer", "train", "--kind", "bpe", "--vocab-size", "100", "--out", str(tmp_path), str(corpus)]
    assert main(train) == 2
    lines = capsys.readouterr().err.strip().split("\n")
    assert len(lines) == 2
    assert "does not exist" in lines[0] and "smaller than the 256 byte tokens" in lines[1]


def test_out_that_is_a_file_is_refused_before_training(corpus, tmp_path, capsys):
    existing = tmp_path / "taken.txt"
    existing.write_text("mine")
    code = main(["tokenizer", "train", "--kind", "bpe", "--vocab-size", "300", "--out", str(existing),
                 str(corpus)])
    err = capsys.readouterr().err
    assert code == 2 and "is an existing file" in err and err.count("\n") == 1
    assert existing.read_text() == "mine"


def test_encode_of_a_missing_input_names_it_as_input(corpus, tmp_path, capsys):
    main(["tokenizer", "train", "--kind", "bpe", "--vocab-size", "300", "--out", str(tmp_path / "bpe"),
          str(corpus)])
    capsys.readouterr()
    code = main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "bpe"), str(tmp_path / "nope.txt")])
    err = capsys.readouterr().err
    assert code == 2 and f"input file {tmp_path / 'nope.txt'} does not exist" in err


def test_sentencepiece_on_too_many_characters_names_lmjax_options(corpus, tmp_path, capsys):
    """5,000 characters seen once each beside 400k of English: at coverage 1 they need more
    pieces than the vocabulary has; at 0.98 they fall back to bytes and training succeeds."""
    crowded = tmp_path / "crowded.txt"
    rare = "".join(chr(0x4E00 + i) for i in range(5_000))
    rare_lines = "\n".join(rare[i:i + 80] for i in range(0, len(rare), 80))
    crowded.write_text(corpus.read_text(encoding="utf-8") * 4 + rare_lines, encoding="utf-8")
    command = ["tokenizer", "train", "--kind", "sentencepiece", "--vocab-size", "400"]
    code = main([*command, "--out", str(tmp_path / "spm"), str(crowded)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--character-coverage" in err and "distinct characters" in err
    assert main([*command, "--character-coverage", "0.98", "--out", str(tmp_path / "spm"), str(crowded)]) == 0


def test_sentencepiece_on_one_endless_line_says_what_is_wrong(tmp_path, capsys):
    binary_like = tmp_path / "one_line.txt"
    binary_like.write_text("ab" * 40_000, encoding="utf-8")
    code = main(["tokenizer", "train", "--kind", "sentencepiece", "--vocab-size", "400", "--out",
                 str(tmp_path / "spm"), str(binary_like)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no usable line" in err
