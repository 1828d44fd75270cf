"""Bad input to `lmjax ngram`, `tokenizer` and `sweep`: one line on stderr, exit code 2, and
nothing trained or written first (each case was a traceback or a silent wrong run before)."""

import io
import os
import textwrap

import pytest

from lmjax.cli import main
from lmjax.tokenizers import spm

TEXT = "the cat sat on the mat\nthe dog sat on the log\na cat ate the fish\n"


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(map(str, argv)))
    return code, capsys.readouterr().err


def one_line_error(code: int, err: str, *parts: str) -> None:
    assert code == 2 and err.count("\n") == 1, err
    for part in parts:
        assert part in err, err


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("mine")
    return path


def test_ngram_sample_counts_must_be_positive(capsys, tmp_path, corpus):
    assert run(capsys, "ngram", "train", corpus, "--out", tmp_path / "m")[0] == 0
    one_line_error(*run(capsys, "ngram", "sample", tmp_path / "m", "--num", -1), "--num -1")
    one_line_error(*run(capsys, "ngram", "sample", tmp_path / "m", "--max-len", 0), "--max-len 0")


@pytest.mark.parametrize("option, value", [("--workers", 0), ("--workers", -1), ("--stale-after", -5)])
def test_sweep_run_options_must_be_positive(capsys, tmp_path, option, value):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base: gpt_tiny\ngrid: {model.n_layers: [1]}\n")
    one_line_error(*run(capsys, "sweep", "run", sweep, option, value), f"{option} {value}")
    assert not (tmp_path / "sweeps").exists() and not any(tmp_path.glob("**/point.json"))


@pytest.mark.parametrize("option, value, shown", [
    ("--extra-ids", "-5", "extra_ids (--extra-ids) is -5"),
    ("--character-coverage", "5", "character_coverage (--character-coverage) is 5.0"),
    ("--character-coverage", "0.5", "takes 0.98 to 1.0"),
])
def test_sentencepiece_ranges_are_checked_before_training(capsys, tmp_path, corpus, option, value, shown):
    argv = ["tokenizer", "train", "--kind", "sentencepiece", "--vocab-size", 300, "--out", tmp_path / "t",
            option, value, corpus]
    one_line_error(*run(capsys, *argv), shown)
    assert not (tmp_path / "t").exists()


def test_a_failed_sentencepiece_check_says_which_check():
    raw = RuntimeError("INTERNAL: src/trainer_interface.cc(94) [a() >= 0.98 && a() <= 1.0] ")
    assert spm._first_line(raw) == "its check `a() >= 0.98 && a() <= 1.0` failed"
    assert spm._first_line(RuntimeError("x.cc(1) [c] vocab too big")) == "vocab too big"


@pytest.mark.parametrize("command", ["tokenizer", "ngram"])
def test_out_under_a_file_is_refused_before_training(capsys, corpus, a_file, command):
    argv = {"tokenizer": ["tokenizer", "train", "--kind", "bpe", "--vocab-size", 260],
            "ngram": ["ngram", "train"]}[command]
    one_line_error(*run(capsys, *argv, "--out", a_file / "sub", corpus), f"lies under the file {a_file}")
    assert a_file.read_text() == "mine"


@pytest.mark.parametrize("command", ["tokenizer", "ngram"])
def test_read_only_out_is_refused_before_training(capsys, tmp_path, corpus, monkeypatch, command):
    """Tests run as root, whom permissions do not stop: the read-only directory is simulated
    by an os.access that denies writing under it, as it would for a normal user."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if str(path).startswith(str(locked)) and mode & os.W_OK else real_access(path, mode, **kw)))
    argv = {"tokenizer": ["tokenizer", "train", "--kind", "bpe", "--vocab-size", 260],
            "ngram": ["ngram", "train"]}[command]
    one_line_error(*run(capsys, *argv, "--out", locked / "new", corpus), "is not writable", str(locked))


def test_sweep_output_dir_under_a_file_names_the_sweep_file(capsys, tmp_path, a_file):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(textwrap.dedent(f"""\
        base: gpt_tiny
        output_dir: {a_file / "out"}
        grid: {{model.n_layers: [1]}}
        """))
    one_line_error(*run(capsys, "sweep", "run", sweep), f"sweep {sweep}: output_dir", "lies under the file")
    one_line_error(*run(capsys, "sweep", "run", sweep, "--output-dir", a_file / "x"), "--output-dir")
    assert a_file.read_text() == "mine"


@pytest.fixture(scope="module")
def spm_dir(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("spm")
    corpus = root / "excerpt.txt"
    corpus.write_text((data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:50_000])
    assert main(["tokenizer", "train", "--kind", "sentencepiece", "--vocab-size", "400", "--out",
                 str(root / "spm"), str(corpus)]) == 0
    return root / "spm"


def test_encode_of_non_utf8_names_the_byte(capsys, tmp_path, monkeypatch, spm_dir):
    data = "año\n".encode("latin-1")  # b"a\xf1o\n": byte 1 is not UTF-8
    path = tmp_path / "latin1.txt"
    path.write_bytes(data)
    one_line_error(*run(capsys, "tokenizer", "encode", "--tokenizer", spm_dir, path),
                   f"{path} is not UTF-8: byte 1 (line 1)")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    one_line_error(*run(capsys, "tokenizer", "encode", "--tokenizer", spm_dir),
                   "standard input is not UTF-8: byte 1 (line 1)")


@pytest.mark.parametrize("option", ["--executor", "--backend"])
def test_executor_option_keeps_its_old_name(option):
    from lmjax.cli import build_parser

    args = build_parser().parse_args(["sweep", "run", "s.yaml", option, "ray"])
    assert args.executor == "ray"
    assert build_parser().parse_args(["sweep", "run", "s.yaml"]).executor == "local"
