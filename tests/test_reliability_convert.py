"""`lmjax convert hf PATH OUT_DIR` checks OUT_DIR before it reads any weight: a file, a path
under a file or a read-only file system is one line, exit 2, and nothing is created.

The source here has a valid GPT-2 config.json but weights that cannot be read, so an error
about OUT_DIR proves the check came first.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from lmjax import cli

GPT2_CONFIG = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 99,
               "n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32}


@pytest.fixture
def source(tmp_path):
    directory = tmp_path / "hf"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(GPT2_CONFIG))
    (directory / "model.safetensors").write_bytes(b"not safetensors")
    return directory


def convert(capsys, source, out_dir) -> str:
    assert cli.main(["convert", "hf", str(source), str(out_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmjax convert: error: ") and err.count("\n") == 1, err
    return err


def test_an_out_dir_that_is_a_file_is_refused_before_the_weights_are_read(tmp_path, source, capsys):
    (tmp_path / "taken").write_text("mine")
    err = convert(capsys, source, tmp_path / "taken")
    assert f"OUT_DIR {tmp_path / 'taken'} is a file, not a directory: choose another OUT_DIR" in err
    assert (tmp_path / "taken").read_text() == "mine"


def test_an_out_dir_under_a_file_is_refused_before_the_weights_are_read(tmp_path, source, capsys):
    (tmp_path / "taken").write_text("mine")
    err = convert(capsys, source, tmp_path / "taken" / "export")
    assert f"lies under {tmp_path / 'taken'}, which is a file" in err


def test_unreadable_weights_with_a_good_out_dir_are_still_reported(tmp_path, source, capsys):
    """The control: the same source with a usable OUT_DIR fails on its weights, and leaves no
    OUT_DIR behind."""
    convert(capsys, source, tmp_path / "export")
    assert not (tmp_path / "export").exists()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_an_out_dir_on_a_read_only_file_system_is_refused(tmp_path, source):
    target = tmp_path / "ro"
    target.mkdir()
    script = (f"mount --bind {target} {target} && mount -o remount,ro,bind {target} && "
              f"exec {sys.executable} -m lmjax.cli convert hf {source} {target / 'export'}")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                            text=True, timeout=240)
    if "unshare" in result.stderr and result.returncode != 2:
        pytest.skip(f"user namespaces are not permitted here: {result.stderr.strip()}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == (
        f"lmjax convert: error: OUT_DIR {target / 'export'} is on a read-only file system: "
        "choose a writable OUT_DIR")
