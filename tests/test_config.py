"""Configs: package data, presets merged key by key, one validate, one-line errors for bad files."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

from lmjax import cli
from lmjax.config import MeshConfig, load_config, named_configs, presets, validate
from lmjax.errors import ConfigError


def test_named_configs_are_package_data_readable_from_any_directory(tmp_path):
    code = "from lmjax.config import load_config; print(load_config('gpt_tiny').model.d_model)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "64"
    assert {"gpt_tiny", "gpt_small_cpu", "bert_tiny", "t5_tiny"} <= set(named_configs())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"model: {d_model: 64\n", "is not valid YAML at line"),
        (b"model:\n  d_model: \xff\xfe\n", "is not UTF-8 text"),
        (b"- a\n- b\n", "holds a list at the top level"),
        (b"name: !!python/object/apply:os.system ['true']\n", "is not valid YAML"),
    ],
)
def test_bad_yaml_files_give_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert cli.main(["train", "--config", str(path), f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_override_without_equals_sign_says_so():
    with pytest.raises(ConfigError, match="override 'train.steps' has no '='"):
        load_config("gpt_tiny", ["train.steps"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["checkpoint.keep=0"], "checkpoint.keep=0 must be at least 1"),
        (["checkpoint.every=0"], "checkpoint.every=0 must be at least 1"),
        (["data.character_coverage=0.5"], "data.character_coverage=0.5 must lie in [0.98, 1]"),
    ],
)
def test_checkpoint_and_data_ranges(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config("gpt_tiny", overrides)
    assert message in str(err.value)


@pytest.mark.smoke
def test_validate_checks_mesh_and_batch_layout_for_a_device_count():
    config = load_config("gpt_tiny", ["train.global_batch_size=12"])
    validate(config)  # without a device count only the config's own values are checked
    with pytest.raises(ConfigError, match="data-parallel size data\\*fsdp=8"):
        validate(config, n_devices=8)
    validate(config, n_devices=4)
    with pytest.raises(ConfigError, match="not divisible by the 5 hosts"):
        validate(config, n_devices=4, n_processes=5)
    with pytest.raises(ConfigError, match="but there are 8 devices"):
        validate(load_config("gpt_tiny", ["mesh.data=3"]), n_devices=8)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown model.preset 'gpt5'") as err:
        load_config("gpt_tiny", ["model.preset=gpt5"])
    if presets():
        assert sorted(presets())[0] in str(err.value)


def _a_gpt_preset() -> str:
    names = [name for name, values in presets().items() if values.get("arch", "gpt") == "gpt"]
    if not names:
        pytest.skip("no GPT preset shipped yet")
    return sorted(names)[0]


def test_preset_from_overrides_beats_the_file_and_explicit_keys_beat_the_preset():
    name = _a_gpt_preset()
    shape = presets()[name]
    config = load_config("gpt_tiny", [f"model.preset={name}", "model.n_layers=1",
                                      f"data.seq_len={min(32, shape['max_len'])}"])
    assert config.model.preset == name and config.model.n_layers == 1
    assert config.model.d_model == shape["d_model"] and config.model.vocab_size == shape["vocab_size"]


def test_preset_in_a_file_sits_below_the_files_own_keys(tmp_path):
    name = _a_gpt_preset()
    path = tmp_path / "mine.yaml"
    path.write_text(f"name: mine\nmodel:\n  preset: {name}\n  n_layers: 1\ndata:\n  seq_len: 32\n")
    config = load_config(str(path))
    assert config.model.n_layers == 1 and config.model.d_model == presets()[name]["d_model"]


def test_eval_tasks_whose_files_are_missing_stop_before_training(tmp_path, capsys):
    """A sweep of arch_compare once trained every point and then failed at its first
    evaluation for want of the CBT question files; now `lmjax train` (and --check, a sweep's
    dry run, the harness callback) says so up front, where evaluation is set up."""
    from types import SimpleNamespace

    from lmjax.eval.callback import callbacks_for, check_eval_tasks
    from lmjax.sweep.runner import check_points

    overrides = [f"data.data_dir={tmp_path}", "train.eval_tasks=[lambada_final_token,wikitext2]"]
    for check in ([], ["--check"]):
        argv = ["train", "--config", "gpt_tiny", f"run_dir={tmp_path / 'run'}", *overrides, *check]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "lambada/lambada_development_plain_text.txt, which does not exist" in err
        assert err.count("\n") == 1 and not (tmp_path / "run").exists()
    (tmp_path / "lambada").mkdir()
    (tmp_path / "lambada" / "lambada_development_plain_text.txt").write_text("a passage\n")
    config = load_config("gpt_tiny", overrides)
    for refuses in (check_eval_tasks, callbacks_for,
                    lambda c: check_points([SimpleNamespace(name="p", config=c)], None, None)):
        with pytest.raises(ConfigError, match="wikitext2/wiki.valid.tokens"):
            refuses(config)
    (tmp_path / "wikitext2").mkdir()
    (tmp_path / "wikitext2" / "wiki.valid.tokens").write_text(" = A = \n")
    check_eval_tasks(config)
    assert load_config("gpt_tiny", overrides).train.eval_tasks == ["lambada_final_token", "wikitext2"]


def test_eval_limit_and_truncation_reach_the_harness_callback(tmp_path):
    from lmjax.eval.callback import callbacks_for

    (tmp_path / "lambada").mkdir()
    (tmp_path / "lambada" / "lambada_development_plain_text.txt").write_text("a passage\n")
    base = [f"data.data_dir={tmp_path}", "train.eval_tasks=[lambada]"]
    [default] = callbacks_for(load_config("gpt_tiny", base))
    assert (default.limit, default.truncate) == (200, False)
    [every] = callbacks_for(load_config("gpt_tiny", base + ["train.eval_limit=0", "train.eval_truncate=true"]))
    assert (every.limit, every.truncate) == (None, True)
    with pytest.raises(ConfigError, match="train.eval_limit=-1 must be >= 0"):
        load_config("gpt_tiny", base + ["train.eval_limit=-1"])


REPOSITORY_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def test_every_file_in_the_repositorys_configs_is_a_named_config_or_preset():
    files = sorted(path.stem for path in REPOSITORY_CONFIGS.glob("*.yaml"))
    assert files and named_configs() == files
    for name in files:
        assert load_config(name).name  # each loads and validates
    for path in sorted((REPOSITORY_CONFIGS / "presets").glob("*.yaml")):
        assert set(yaml.safe_load(path.read_text())) <= set(presets()), path


def test_default_axis_rules_are_the_data_file_and_each_config_has_its_own_copy():
    written = [["batch", ["data", "fsdp"]], ["embed", "fsdp"], ["heads", "tensor"],
               ["kv_heads", "tensor"], ["mlp", "tensor"], ["vocab", "tensor"], ["length", None],
               ["kv", None], ["layers", None], ["type_vocab", None], ["relpos_buckets", None],
               ["classes", None]]
    assert load_config("gpt_tiny").mesh.axis_rules == written
    first, second = MeshConfig(), MeshConfig()
    assert first.axis_rules == written
    first.axis_rules[0][1].append("tensor")
    assert second.axis_rules == written and MeshConfig().axis_rules == written
