"""Damaged run-directory files: metrics.jsonl cut short or garbled, config.yaml that is not YAML.

A torn last line of metrics.jsonl (what a full disk or power loss leaves) is dropped on resume
with a one-line warning; any other damage is refused in one line naming the file and line, and
the file is left as it was.
"""

from __future__ import annotations

import json
import warnings

import pytest

from lmjax import cli
from lmjax.config import load_config
from lmjax.errors import CheckpointError, LmjaxWarning, one_line_warnings
from lmjax.runs import config_file
from lmjax.runs.layout import RunLayout
from lmjax.runs.open import read_metrics as run_metrics
from lmjax.train.reporting import read_metrics, truncate_metrics

RECORDS = [{"step": 1, "loss": 3.5}, {"step": 2, "loss": 3.25}, {"step": 3, "loss": None}]


def write_metrics(run_dir, tail: bytes = b"") -> bytes:
    data = "".join(json.dumps(r) + "\n" for r in RECORDS).encode() + tail
    (run_dir / "metrics.jsonl").write_bytes(data)
    return data


@pytest.mark.parametrize("tail", [b'{"step": 4, "loss": 3.1', b"\x00\x00\x00\x00",
                                  b'{"step": 4, "lo\xc3'], ids=["cut", "zeros", "cut_in_a_character"])
def test_a_torn_last_line_is_left_out_and_dropped_on_resume_with_one_warning(tmp_path, tail):
    write_metrics(tmp_path, tail)
    assert read_metrics(tmp_path) == RECORDS
    assert run_metrics(RunLayout.at(tmp_path)) == RECORDS  # what open_run shows (generate, eval)
    with pytest.warns(LmjaxWarning) as caught:
        truncate_metrics(tmp_path, last_step=2)
    (warning,) = caught
    assert str(warning.message).startswith(
        f"dropped the torn last line 4 of {tmp_path / 'metrics.jsonl'} (a write cut short")
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(json.dumps(r) + "\n"
                                                               for r in RECORDS[:2])


def test_a_complete_last_record_without_its_newline_is_kept(tmp_path):
    write_metrics(tmp_path, b'{"step": 4, "loss": 3.0}')
    assert read_metrics(tmp_path) == [*RECORDS, {"step": 4, "loss": 3.0}]
    truncate_metrics(tmp_path, last_step=4)
    assert read_metrics(tmp_path)[-1] == {"step": 4, "loss": 3.0}
    assert (tmp_path / "metrics.jsonl").read_text().endswith('"loss": 3.0}\n')


@pytest.mark.parametrize(("line", "problem"), [
    (b'{"step": 2, "loss": 3.25', "not JSON: Expecting ',' delimiter at column 25"),
    (b"\xff\xfe\x00binary", "byte 0 is not UTF-8"),
    (b'["step", 2]', "not a record with an integer step"),
    (b'{"loss": 2.0}', "not a record with an integer step"),
], ids=["cut", "binary", "list", "no_step"])
def test_a_damaged_line_before_the_last_is_refused_naming_file_and_line(tmp_path, line, problem):
    lines = [json.dumps(r).encode() for r in RECORDS]
    lines[1] = line
    data = b"\n".join(lines) + b"\n"
    (tmp_path / "metrics.jsonl").write_bytes(data)
    expected = f"{tmp_path / 'metrics.jsonl'} line 2 is damaged ({problem}): move the file aside"
    readers = [lambda: read_metrics(tmp_path), lambda: truncate_metrics(tmp_path, 3)]
    if "step" not in problem:  # open_run also shows post-training records, which have no step
        readers.append(lambda: run_metrics(RunLayout.at(tmp_path)))
    for read in readers:
        with pytest.raises(CheckpointError) as err:
            read()
        assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    assert (tmp_path / "metrics.jsonl").read_bytes() == data


def test_open_run_shows_records_without_a_step_and_refuses_what_is_not_an_object(tmp_path):
    """Post-training exports log records such as {"held_out_accuracy": 0.5}."""
    (tmp_path / "metrics.jsonl").write_text('{"held_out_accuracy": 0.5}\n[1, 2]\n')
    with pytest.raises(CheckpointError, match="line 2 is damaged \\(not a JSON object\\)"):
        run_metrics(RunLayout.at(tmp_path))
    (tmp_path / "metrics.jsonl").write_text('{"held_out_accuracy": 0.5}\n')
    assert run_metrics(RunLayout.at(tmp_path)) == [{"held_out_accuracy": 0.5}]


@pytest.mark.parametrize(("text", "problem"), [
    (b"model:\n  d_model: 64\n    n_layers: 2\n", "line 3: mapping values are not allowed here"),
    (b"model: {d_model: 64\n", "line 2: "),
    (b"\xff\xfe model", "is not UTF-8 text (byte 0)"),
    (b"- a list\n", "is not an lmjax config (a mapping of sections)"),
], ids=["indent", "unclosed", "binary", "list"])
def test_a_damaged_saved_config_is_refused_in_one_line_naming_it(tmp_path, capsys, text, problem):
    (tmp_path / "config.yaml").write_bytes(text)
    for check in (lambda: config_file.read_config(tmp_path),
                  lambda: config_file.check_compatible(tmp_path, None)):
        with pytest.raises(CheckpointError) as err:
            check()
        message = str(err.value)
        assert message.startswith(f"{tmp_path / 'config.yaml'} ") and problem in message
        assert "\n" not in message and "use a new run_dir" in message
    code = cli.main(["train", "--config", "gpt_tiny", f"run_dir={tmp_path}", "train.steps=4"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("lmjax train: error: ") and err.count("\n") == 1, err
    assert problem in err and (tmp_path / "config.yaml").read_bytes() == text


def test_an_empty_saved_config_still_conflicts_with_nothing(tmp_path):
    """A start cut short while writing config.yaml leaves it empty; the next start resumes."""
    (tmp_path / "config.yaml").write_text("")
    assert config_file.check_compatible(tmp_path, load_config("gpt_tiny")) is True


def test_lmjax_warnings_print_as_one_line_in_the_cli_and_others_keep_their_format():
    with one_line_warnings("lmjax train"):
        ours = warnings.formatwarning("taking over the lock", LmjaxWarning, __file__, 1)
        theirs = warnings.formatwarning("deprecated", DeprecationWarning, __file__, 1)
    assert ours == "lmjax train: warning: taking over the lock\n"
    assert theirs.startswith(f"{__file__}:1: DeprecationWarning: deprecated\n")
    assert warnings.formatwarning("x", LmjaxWarning, __file__, 1).startswith(f"{__file__}:1: ")
