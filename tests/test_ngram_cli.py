"""`lmjax ngram` end to end: train, eval, sample, shannon and its one-line errors."""

import json
import re

import pytest

from lmjax.cli import main

TRAIN = "the cat sat on the mat\nthe dog sat on the log\n\na cat ate the fish\n"


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(TRAIN)
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def value(out: str, name: str) -> float:
    return float(re.search(rf"^{name}\s+(\S+)", out, re.M).group(1).rstrip("%"))


@pytest.mark.smoke
def test_train_eval_sample_words(capsys, tmp_path, corpus):
    code, out, _ = run(capsys, "ngram", "train", "--order", 2, "--smoothing", "mle", corpus, "--out", tmp_path / "m")
    assert code == 0 and "2-gram mle on 17 word tokens" in out
    code, out, _ = run(capsys, "ngram", "eval", tmp_path / "m", corpus)
    # Hand-counted: p(the|<s>) = 2/3 twice, p(a|<s>) = 1/3, five "the x" at 1/5, two "cat x" at 1/2, the rest 1.
    assert code == 0 and "17 word tokens, 20 predicted symbols" in out
    expected = ((2 / 3) ** 2 * (1 / 3) * (1 / 5) ** 5 * (1 / 2) ** 2) ** (-1 / 20)
    assert value(out, "perplexity") == pytest.approx(expected, rel=1e-4)
    assert value(out, "oov rate") == 0.0
    code, out, _ = run(capsys, "ngram", "sample", tmp_path / "m", "--num", 3, "--seed", 1)
    assert code == 0 and len(out.splitlines()) == 3
    assert set(out.split()) <= set(TRAIN.split())


def test_char_unit_and_oov(capsys, tmp_path, corpus):
    run(capsys, "ngram", "train", "--unit", "char", "--order", 3, "--smoothing", "kn", corpus, "--out", tmp_path / "c")
    saved = json.loads((tmp_path / "c" / "model.json").read_text())
    assert saved["meta"]["unit"] == "char" and saved["config"]["smoothing"] == "kneser_ney"
    test = tmp_path / "test.txt"
    test.write_text("the zebra\n")
    code, out, _ = run(capsys, "ngram", "eval", tmp_path / "c", test)
    assert code == 0 and value(out, "oov rate") == pytest.approx(100 * 3 / 9, abs=0.01)  # z, b and r are unseen
    assert 1 < value(out, "perplexity") < 30


def test_tokenizer_unit(capsys, tmp_path, corpus):
    tokenizers = pytest.importorskip("lmjax.tokenizers")
    tokenizer = tokenizers.train_tokenizer("bpe", [corpus], vocab_size=270)
    tokenizer.save(tmp_path / "tok")
    code, out, _ = run(capsys, "ngram", "train", "--unit", "tokenizer", "--tokenizer", tmp_path / "tok",
                       "--smoothing", "laplace", corpus, "--out", tmp_path / "t")
    assert code == 0
    code, out, _ = run(capsys, "ngram", "eval", tmp_path / "t", corpus)
    n_ids = sum(len(tokenizer.encode(line)) for line in TRAIN.splitlines() if line.strip())
    assert code == 0 and f"{n_ids} tokenizer tokens" in out
    code, out, _ = run(capsys, "ngram", "sample", tmp_path / "t", "--seed", 0)
    assert code == 0


def test_shannon_prints_estimates_beside_shannon(capsys, tmp_path):
    path = tmp_path / "abc.txt"
    path.write_text("abcabcabc " * 200)
    code, out, _ = run(capsys, "ngram", "shannon", path, "--max-order", 4)
    assert code == 0
    assert value(out, "F0") == pytest.approx(4.700, abs=1e-3) and "4.70" in out
    assert value(out, "F1") == pytest.approx(1.585, abs=1e-3)  # log2 3: a, b, c equally often
    assert value(out, "F2") == pytest.approx(0.0, abs=1e-3) and re.search(r"^F4 .* -$", out, re.M)


@pytest.mark.parametrize(
    "argv, message",
    [
        ("train {corpus} --order 0 --out {out}", "order must be an integer ≥ 1"),
        ("train {corpus} --discount 1.5 --out {out}", "discount must lie strictly between 0 and 1"),
        ("train {corpus} --smoothing mle --k 2 --out {out}", "k is only used by add_k"),
        ("train {empty} --out {out}", "training text is empty"),
        ("train {missing} --out {out}", "not found"),
        ("eval {model} {corpus} --unit char", "trained on unit 'word', not 'char'"),
        ("eval {old} {corpus}", "format version 0, this lmjax reads version 1"),
        ("eval {out} {corpus}", "no n-gram model"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, corpus, argv, message):
    paths = {name: tmp_path / name for name in ("empty", "missing", "model", "old", "out")}
    paths["empty"].write_text("\n\n")
    run(capsys, "ngram", "train", corpus, "--out", paths["model"])
    paths["old"].mkdir()
    saved = (paths["model"] / "model.json").read_text()
    (paths["old"] / "model.json").write_text(saved.replace('"version":1', '"version":0'))
    code, _, err = run(capsys, "ngram", *argv.format(corpus=corpus, **paths).split())
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("lmjax ngram: error:") and message in err
