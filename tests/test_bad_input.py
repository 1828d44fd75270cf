"""Bad input gets one line saying what is wrong, before compilation, with nothing written."""

from __future__ import annotations

import pytest

from lmjax import cli
from lmjax.config import load_config


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["train", "--config", "gpt_tiny", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.n_layer=3"], "unknown config key 'model.n_layer'"),
        (["train.steps=ten"], "bad value for config key 'train.steps'"),
        (["model.n_heads=5"], "model.n_heads=5 does not divide model.d_model=64"),
        (["data.seq_len=65"], "data.seq_len=65 exceeds model.max_len=64"),
        (["mesh.data=3", "mesh.tensor=2"], "product equal the device count"),
        (["train.global_batch_size=12"], "not divisible by the data-parallel size data*fsdp=8"),
        (["train.global_batch_size=8", "train.grad_accum_steps=3"], "not divisible by"),
        (["data.corpus=/nonexistent/corpus.txt"], "/nonexistent/corpus.txt"),
    ],
)
def test_one_line_error_and_nothing_written(tmp_path, capsys, overrides, message):
    run_dir = tmp_path / "run"
    code, err = run_cli(capsys, f"run_dir={run_dir}", *overrides)
    assert code == 2
    assert message in err and err.count("\n") == 1, err
    assert not run_dir.exists()


def test_init_from_a_missing_directory_is_refused_before_anything_is_written(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (tmp_path / "empty").mkdir()
    for source, message in ((tmp_path / "nowhere", "does not exist"),
                            (tmp_path / "empty", "has neither params/ nor checkpoints/")):
        code, err = run_cli(capsys, f"run_dir={run_dir}", f"checkpoint.init_from={source}")
        assert code == 2 and err.count("\n") == 1 and message in err, err
        assert not run_dir.exists()


def test_check_validates_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--config", "gpt_tiny", "--check", f"run_dir={run_dir}"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "config valid for 8 devices" in out and "120,576 parameters" in out
    assert "tinyshakespeare" in out and not run_dir.exists()
    code, err = run_cli(capsys, "--check", f"run_dir={run_dir}", "train.global_batch_size=12")
    assert code == 2 and "data-parallel size data*fsdp=8" in err and not run_dir.exists()


def test_missing_default_corpus_says_where_to_put_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LMJAX_DATA_DIR", str(tmp_path / "empty_data_dir"))
    code, err = run_cli(capsys, f"run_dir={tmp_path / 'run'}", "data.download=false")
    assert code == 2 and err.count("\n") == 1
    assert str(tmp_path / "empty_data_dir" / "tinyshakespeare" / "input.txt") in err
    assert not (tmp_path / "run").exists()


def test_conflicting_run_dir_is_refused_and_left_untouched(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    saved = load_config("gpt_tiny", [f"run_dir={run_dir}"])
    from lmjax.runs.config_file import save_config

    save_config(run_dir, saved)
    before = (run_dir / "config.yaml").read_text()
    code, err = run_cli(capsys, f"run_dir={run_dir}", "model.d_model=128")
    assert code == 2 and err.count("\n") == 1
    assert "holds a run with model.d_model=64 but this run asks for 128" in err
    assert (run_dir / "config.yaml").read_text() == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]
