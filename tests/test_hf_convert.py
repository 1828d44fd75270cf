"""`lmjax convert hf` then `lmjax train --config bert_tiny checkpoint.init_from=OUT`: the run
starts from the imported weights, logs masked-LM metrics, checkpoints and resumes."""

import jax
import numpy as np
import pytest

from lmjax import cli
from lmjax.config import load_config
from lmjax.runs.importers.hf import from_pretrained
from lmjax.train import train
from lmjax.train.callbacks import default_callbacks
from lmjax.train.loop import run_training
from lmjax.train.setup import build_setup
from lmjax.train.reporting import read_metrics
from lmjax.train.step import summed_loss_fn

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert_tiny_checkpoint(tmp_path_factory):
    """A transformers BertForMaskedLM of exactly bert_tiny's shape."""
    model = load_config("bert_tiny").model
    config = transformers.BertConfig(
        vocab_size=model.vocab_size, hidden_size=model.d_model, num_hidden_layers=model.n_layers,
        num_attention_heads=model.n_heads, intermediate_size=model.d_ff,
        max_position_embeddings=model.max_len, type_vocab_size=model.type_vocab_size,
    )
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("hf_bert")
    transformers.BertForMaskedLM(config).save_pretrained(directory)
    return directory


def test_convert_writes_a_config_and_params_that_train_continues_from(bert_tiny_checkpoint, tmp_path,
                                                                     capsys):
    export = tmp_path / "export"
    assert cli.main(["convert", "hf", str(bert_tiny_checkpoint), str(export)]) == 0
    assert "checkpoint.init_from" in capsys.readouterr().out
    assert load_config(str(export / "config.yaml")).model == load_config("bert_tiny").model
    assert (export / "params").is_dir()

    run = [f"run_dir={tmp_path / 'run'}", f"checkpoint.init_from={export}", "checkpoint.every=2",
           "train.eval_every=4", "train.eval_batches=1", "train.peak_flops=1e12"]
    setup = build_setup(load_config("bert_tiny", [*run, "train.steps=4"]))
    first_batch = next(setup.batches("train"))
    records = run_training(setup, default_callbacks()).records

    model, params = from_pretrained(bert_tiny_checkpoint)
    loss_sum, (tokens, _) = jax.jit(summed_loss_fn(model, setup.objective))(params, first_batch)
    assert records[0]["mlm_loss"] == pytest.approx(float(loss_sum / tokens), rel=1e-5)
    final = records[-1]
    for name in ("eval_mlm_loss", "eval_accuracy", "eval_perplexity"):
        assert np.isfinite(final[name]), name

    resumed = train(load_config("bert_tiny", [*run, "train.steps=6"])).records
    assert [r["step"] for r in resumed] == [5, 6]
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3, 4, 5, 6]


def test_convert_refuses_a_non_empty_output_directory(bert_tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert cli.main(["convert", "hf", str(bert_tiny_checkpoint), str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not empty" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("config_json, message", [
    (None, "has no config.json, so it is not a transformers model"),
    ('{"hidden_size": 16}', "has no model_type, so it is not a transformers model config"),
])
def test_convert_of_a_directory_that_is_not_a_transformers_model(tmp_path, capsys, config_json, message):
    source = tmp_path / "source"
    source.mkdir()
    (source / "notes.txt").write_text("not a model")
    if config_json:
        (source / "config.json").write_text(config_json)
    assert cli.main(["convert", "hf", str(source), str(tmp_path / "export")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not (tmp_path / "export").exists()


def test_convert_of_an_lmjax_export_needs_no_conversion(bert_tiny_checkpoint, tmp_path, capsys):
    export = tmp_path / "export"
    assert cli.main(["convert", "hf", str(bert_tiny_checkpoint), str(export)]) == 0
    capsys.readouterr()
    assert cli.main(["convert", "hf", str(export), str(tmp_path / "again")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "has no config.json" in error
