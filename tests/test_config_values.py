"""Values that cannot be right are refused by `validate` (so `lmjax train --check` says so),
and the messages for common slips say what to write instead."""

from __future__ import annotations

import pytest

from lmjax import cli
from lmjax.config import load_config
from lmjax.errors import ConfigError


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # Adam's moment decays are averaging weights: 1 never forgets, above 1 diverges.
        ("train.b1=1.5", "train.b1=1.5 must lie in [0, 1)"),
        ("train.b1=1.0", "train.b1=1.0 must lie in [0, 1)"),
        ("train.b2=-1", "train.b2=-1.0 must lie in [0, 1)"),
        ("train.eps=-1", "train.eps=-1.0 must be positive"),
        ("train.weight_decay=-1", "train.weight_decay=-1.0 must be >= 0"),
        ("train.grad_clip=-1", "train.grad_clip=-1.0 must be >= 0"),
        ("model.norm_eps=-1", "model.norm_eps=-1.0 must be positive"),
        ("train.skip_nonfinite_batches=-1", "train.skip_nonfinite_batches=-1 must be >= 0"),
        ("train.lr=nan", "train.lr=nan must be a finite number"),
        ("train.lr=inf", "train.lr=inf must be a finite number"),
        ("model.rope_theta=nan", "model.rope_theta=nan must be a finite number"),
        ("data.mask_prob=nan", "data.mask_prob=nan must be a finite number"),
        # 10**22 steps: an int32 step counter holds at most 2**31 - 1 = 2147483647.
        ("train.steps=10000000000000000000000", "train.steps=10000000000000000000000 exceeds 2147483647"),
        ("train.steps=2147483648", "exceeds 2147483647"),
        ("train.eval_limit=-1", "train.eval_limit=-1 must be >= 0"),
    ],
)
def test_impossible_values_are_refused(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("gpt_tiny", [override])
    assert message in str(err.value)


@pytest.mark.parametrize("override", ["train.b1=0", "train.b2=0.999999", "train.weight_decay=0",
                                      "train.grad_clip=0", "train.skip_nonfinite_batches=3",
                                      "train.steps=2147483647"])
def test_edge_values_that_are_right_pass(override):
    load_config("gpt_tiny", [override, "train.warmup_steps=0"])


def test_check_refuses_an_impossible_value_in_one_line(tmp_path, capsys):
    argv = ["train", "--config", "gpt_tiny", f"run_dir={tmp_path / 'run'}", "train.b1=1.5", "--check"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "train.b1=1.5 must lie in [0, 1)" in err and err.count("\n") == 1


def test_a_bare_word_for_a_list_key_says_to_write_a_list():
    with pytest.raises(ConfigError) as err:
        load_config("gpt_tiny", ["train.eval_tasks=lambada"])
    assert "train.eval_tasks takes a list: write train.eval_tasks=[lambada]" in str(err.value)
    assert "AnyNode" not in str(err.value)


def test_an_empty_yaml_file_is_named_and_asked_for_a_name(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert f"config {path} sets no name" in str(err.value) and "name: " in str(err.value)
    assert load_config(str(path), ["name=given"]).name == "given"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["flops", "--preset", "gpt5"], "unknown model.preset 'gpt5'"),
        (["flops", "--config", "BAD_YAML"], "is not valid YAML at line"),
        (["flops", "--preset", "gpt3-small", "--tokens", "inf"], "--tokens inf must be a finite positive"),
        (["flops", "--preset", "gpt3-small", "--tokens", "nan"], "--tokens nan must be a finite positive"),
        (["flops", "--preset", "gpt3-small", "--tokens", "-5"], "--tokens -5 must be a finite positive"),
    ],
)
def test_flops_names_the_real_error_first(tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {d_model: 64\n")
    argv = [str(bad) if arg == "BAD_YAML" else arg for arg in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_flops_help_says_tokens_is_required(capsys):
    with pytest.raises(SystemExit):
        cli.main(["flops", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "required unless --table-d1" in out
