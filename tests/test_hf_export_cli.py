"""`lmjax convert` on the command line: `from-hf` and its old name `hf`, and `to-hf`'s bad
input, each a one-line error (exit 2) with nothing written, and `--overwrite`, which moves
the old contents aside instead of deleting them."""

import dataclasses

import pytest
from hf_export_helpers import random_export

from lmjax import cli
from lmjax.config import ModelConfig, load_config
from lmjax.errors import ConfigError
from lmjax.runs.exporters import bert, exporter_for, gpt2, t5

GPT = ModelConfig(arch="gpt", vocab_size=64, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=16)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return random_export(tmp_path_factory.mktemp("gpt") / "lmjax", GPT)


def one_line_error(capsys, args) -> str:
    assert cli.main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    return error


def listing(directory):
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


def test_from_hf_and_its_old_name_hf_write_the_same_export(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=50, n_embd=8, n_head=2, n_layer=1, n_positions=8,
                                     bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    for name in ("from-hf", "hf"):
        assert cli.main(["convert", name, str(tmp_path / "gpt2"), str(tmp_path / name)]) == 0
    models = [load_config(str(tmp_path / name / "config.yaml")).model for name in ("from-hf", "hf")]
    assert models[0] == models[1] and models[0].d_model == 8
    names = [sorted(path.name for path in (tmp_path / name).iterdir()) for name in ("from-hf", "hf")]
    assert names[0] == names[1] and "params" in names[0]


def test_a_non_empty_output_directory_is_refused(source, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    error = one_line_error(capsys, ["convert", "to-hf", str(source), str(tmp_path / "out")])
    assert "not empty" in error and "--overwrite" in error
    assert listing(tmp_path) == ["out", "out/mine.txt"]


def test_overwrite_moves_the_old_contents_aside(source, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    assert cli.main(["convert", "to-hf", str(source), str(tmp_path / "out"), "--overwrite"]) == 0
    assert "moved the previous contents" in capsys.readouterr().out
    aside = [path for path in tmp_path.iterdir() if path.name.startswith("out.replaced-")]
    assert len(aside) == 1 and (aside[0] / "mine.txt").read_text() == "keep me"
    assert (tmp_path / "out" / "config.json").exists() and not (tmp_path / "out" / "mine.txt").exists()


def test_a_run_without_a_checkpoint_is_refused(source, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text((source / "config.yaml").read_text())
    (run / "lmjax_version").write_text((source / "lmjax_version").read_text())
    error = one_line_error(capsys, ["convert", "to-hf", str(run), str(tmp_path / "out")])
    assert "checkpoints" in error
    assert listing(tmp_path) == ["run", "run/config.yaml", "run/lmjax_version"]


@pytest.mark.parametrize("option, value, message", [
    ("--dtype", "int8", "--dtype 'int8' is not one of float32, bfloat16, float16"),
    ("--shard-size", "2XB", "--shard-size '2XB' is not a size"),
    ("--shard-size", "lots", "--shard-size 'lots' is not a size"),
    ("--shard-size", "0", "--shard-size '0' is not a size"),
    ("--shard-size", "-1GB", "--shard-size '-1GB' is not a size"),
])
def test_bad_options_are_refused_before_anything_is_read(source, tmp_path, capsys, option, value,
                                                         message):
    error = one_line_error(capsys, ["convert", "to-hf", str(source), str(tmp_path / "out"),
                                    f"{option}={value}"])
    assert message in error
    assert listing(tmp_path) == []


def test_a_bucket_output_is_refused(source, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    error = one_line_error(capsys, ["convert", "to-hf", str(source), "gs://bucket/export"])
    assert "is a URI: to-hf writes a local directory" in error
    assert listing(tmp_path) == []


def test_a_model_no_transformers_class_expresses_is_refused(tmp_path, capsys):
    rope_layernorm = dataclasses.replace(GPT, position="rope")
    source = random_export(tmp_path / "lmjax", rope_layernorm)
    error = one_line_error(capsys, ["convert", "to-hf", str(source), str(tmp_path / "out")])
    assert "no transformers class can express" in error and "model.position='rope'" in error
    assert not (tmp_path / "out").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lmjax"]


@pytest.mark.parametrize("exporter, model, option", [
    (gpt2, dataclasses.replace(GPT, n_kv_heads=1), "model.n_kv_heads=1"),
    (gpt2, dataclasses.replace(GPT, norm="rmsnorm"), "model.norm='rmsnorm'"),
    (gpt2, dataclasses.replace(GPT, mlp="swiglu"), "model.mlp='swiglu'"),
    (gpt2, dataclasses.replace(GPT, head_dim=4), "model.head_dim=4"),
    (bert, dataclasses.replace(GPT, arch="bert", norm="rmsnorm"), "model.norm='rmsnorm'"),
    (t5, ModelConfig(arch="t5", norm="rmsnorm", position="relative", use_bias=True),
     "model.use_bias=true"),
    (t5, ModelConfig(arch="t5", norm="layernorm", position="relative", use_bias=False),
     "model.norm='layernorm'"),
])
def test_each_exporter_names_the_option_its_class_lacks(exporter, model, option):
    assert option in exporter.unsupported(model)


def test_an_option_added_after_the_exporters_is_refused_unless_at_its_default():
    """A knob ModelConfig gains later must not be dropped silently."""
    extended = dataclasses.make_dataclass("Extended", [("future_knob", str, "off")],
                                          bases=(ModelConfig,))
    assert gpt2.unsupported(extended(**dataclasses.asdict(GPT))) is None
    changed = extended(**dataclasses.asdict(GPT), future_knob="on")
    assert "model.future_knob='on'" in gpt2.unsupported(changed)
    with pytest.raises(ConfigError, match="model.future_knob='on'"):
        exporter_for(changed)


@pytest.mark.parametrize("model", [
    dataclasses.replace(GPT, parametrization="mup", mup_base_width=GPT.d_model // 2),
    ModelConfig(arch="gpt", norm="rmsnorm", position="rope", mlp="swiglu", use_bias=False,
                parametrization="mup", mup_base_width=64),
    dataclasses.replace(GPT, arch="bert", parametrization="mup", mup_base_width=GPT.d_model // 2),
])
def test_a_mup_model_is_refused_since_no_transformers_class_has_its_multipliers(model):
    """µP's logit multiplier and 1/d_head attention scale exist in no HF class: exporting one
    would give wrong logits, so the export names the option instead."""
    with pytest.raises(ConfigError, match="model.parametrization='mup'"):
        exporter_for(model)
