"""`lmjax.runs.open_run`: GPT, BERT and T5 runs of `lmjax train`, exports of `lmjax convert`,
transformers directories and llama2.c files open as one `Run`, on one device or a mesh, with
one-line errors for paths that hold no model or a model of another run format."""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from lmjax import cli, parallel
from lmjax.config import MeshConfig, load_config, to_yaml
from lmjax.errors import CheckpointError, DataError
from lmjax.models import build_model
from lmjax.runs import RUN_FORMAT, RunLayout, check_version, open_run, write_version
from lmjax.runs.params import save_params
from lmjax.runs.version import package_version
from lmjax.tokenizers import SentencePieceTokenizer

TRAIN_STEPS = 2


def model_inputs(arch, batch=2, length=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = jnp.asarray(rng.integers(3, 200, (batch, length)), jnp.int32)
    return {"input_ids": ids, "decoder_input_ids": ids[:, ::-1]} if arch == "t5" else {"input_ids": ids}


@pytest.fixture(scope="module", params=["gpt_tiny", "bert_tiny", "t5_tiny"])
def trained(request, tmp_path_factory):
    """A run of `lmjax train` that saved a checkpoint at its last step."""
    run_dir = tmp_path_factory.mktemp(request.param)
    code = cli.main(["train", "--config", request.param, f"run_dir={run_dir}",
                     f"train.steps={TRAIN_STEPS}", f"checkpoint.every={TRAIN_STEPS}",
                     "train.eval_every=1000", "train.eval_batches=1", "train.peak_flops=1e12"])
    assert code == 0
    return run_dir


def orbax_params(run_dir, step):
    """The parameters straight from the checkpoint with orbax, as numpy arrays."""
    manager = ocp.CheckpointManager(run_dir / "checkpoints", item_names=("state", "data"))
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore()))
    manager.close()
    return jax.tree.map(np.asarray, restored["state"]["params"])


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_a_run_opens_with_its_checkpoint_tokenizer_and_metrics(trained):
    run = open_run(trained)
    assert (run.source, run.step, str(run.path)) == ("run", TRAIN_STEPS, str(trained))
    assert [record["step"] for record in run.metrics] == list(range(1, TRAIN_STEPS + 1))
    assert run.tokenizer is not None and run.tokenizer.vocab_size <= run.config.model.vocab_size
    assert run.layout == RunLayout.at(trained)
    device = jax.devices()[0]
    assert all(leaf.sharding.device_set == {device} for leaf in jax.tree.leaves(run.params))

    inputs = model_inputs(run.config.model.arch)
    expected = build_model(run.config.model).apply({"params": orbax_params(trained, TRAIN_STEPS)}, **inputs)
    np.testing.assert_array_equal(run.model.apply({"params": run.params}, **inputs), expected)


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_opening_a_run_logs_nothing_about_the_items_it_does_not_read(trained, caplog):
    """Only the parameters are read; orbax used to log 'Item "data" was found in the checkpoint,
    but could not be restored' twice per open (every `generate` and `eval` on a run)."""
    with caplog.at_level(logging.INFO):
        open_run(trained)
    assert not [r.getMessage() for r in caplog.records if "was found in the checkpoint" in
                r.getMessage()]


def test_a_run_opened_on_a_mesh_of_eight_devices_matches_one_device(trained):
    mesh = parallel.make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    sharded, single = open_run(trained, mesh), open_run(trained)
    rules = parallel.axis_rules(sharded.config.mesh)
    leaves = jax.tree.leaves(sharded.params)
    assert all(leaf.sharding.mesh == mesh for leaf in leaves)
    assert any(not leaf.sharding.is_fully_replicated for leaf in leaves)
    for got, expected in zip(leaves, jax.tree.leaves(single.params), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))

    inputs = model_inputs(sharded.config.model.arch, batch=4)
    with parallel.activate(mesh, rules):
        logits = jax.jit(sharded.model.apply)({"params": sharded.params}, **inputs)
    np.testing.assert_allclose(logits, single.model.apply({"params": single.params}, **inputs),
                               rtol=1e-5, atol=1e-5)


def greedy(run, prefix_ids, n_new, encoder_ids=None):
    """Greedy ids after `prefix_ids`, recomputing one fixed-length buffer per token: the
    decoder is causal, so the slots after position i cannot change its logits."""
    prefix = len(prefix_ids)
    ids = np.zeros((1, prefix + n_new), np.int32)
    ids[0, :prefix] = prefix_ids
    inputs = () if encoder_ids is None else (jnp.asarray([encoder_ids]),)
    apply = jax.jit(lambda buffer: run.model.apply({"params": run.params}, *inputs, buffer))
    for i in range(n_new):
        logits = apply(jnp.asarray(ids))
        ids[0, prefix + i] = int(jnp.argmax(logits[0, prefix - 1 + i, :run.tokenizer.vocab_size]))
    return ids[0, prefix:].tolist()


def test_lmjax_generate_from_a_run_is_the_models_greedy_output(trained, capsys):
    """GPT continues BOS and the prompt; T5 decodes from pad id 0 with the prompt's ids then
    EOS as the encoder's input; BERT is refused in one line."""
    run = open_run(trained)
    code = cli.main(["generate", "--checkpoint", str(trained), "--prompt", "ROMEO:",
                     "--max-new-tokens", "6", "--temperature", "0", "--no-stop", "--ids"])
    out, err = capsys.readouterr()
    tokenizer, arch = run.tokenizer, run.config.model.arch
    if arch == "bert":
        assert code == 2 and err.count("\n") == 1 and "holds a bert model" in err
        return
    assert code == 0
    text_ids = tokenizer.encode_ordinary("ROMEO:")
    if arch == "t5":
        expected = greedy(run, [0], 6, encoder_ids=text_ids + [tokenizer.eos_id])
    else:
        start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
        expected = greedy(run, [start, *text_ids], 6)
    assert json.loads(out) == expected


# --- imports and exports: against transformers' own logits -------------------------------

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def hf_model(family):
    torch.manual_seed(0)
    if family == "gpt2":
        config = transformers.GPT2Config(vocab_size=99, n_embd=16, n_layer=2, n_head=2, n_positions=32)
        return transformers.GPT2LMHeadModel(config)
    if family == "bert":
        config = transformers.BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=32,
                                         max_position_embeddings=32)
        return transformers.BertForMaskedLM(config)
    config = transformers.T5Config(vocab_size=99, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                                   num_heads=2, decoder_start_token_id=0)
    return transformers.T5ForConditionalGeneration(config)


def hf_logits(model, inputs):
    with torch.inference_mode():
        kwargs = {"input_ids": torch.tensor(np.asarray(inputs["input_ids"]))}
        if "decoder_input_ids" in inputs:
            kwargs["decoder_input_ids"] = torch.tensor(np.asarray(inputs["decoder_input_ids"]))
        return model.eval()(**kwargs).logits.numpy()


@pytest.mark.parametrize("family", ["gpt2", "bert", "t5"])
def test_a_transformers_directory_and_its_export_open_with_transformers_logits(family, tmp_path, capsys):
    model = hf_model(family)
    model.save_pretrained(tmp_path / "hf")
    assert cli.main(["convert", "hf", str(tmp_path / "hf"), str(tmp_path / "export")]) == 0
    capsys.readouterr()
    imported, exported = open_run(tmp_path / "hf"), open_run(tmp_path / "export")
    assert (imported.source, imported.step, imported.layout, imported.metrics) == ("hf", None, None, [])
    assert (exported.source, exported.step, exported.metrics) == ("export", None, [])
    assert exported.config.model == imported.config.model
    assert exported.layout.version.exists() and check_version(exported.layout) == RUN_FORMAT

    inputs = model_inputs(imported.config.model.arch, length=6)
    inputs = {name: ids % 99 for name, ids in inputs.items()}
    expected = hf_logits(model, inputs)
    for run in (imported, exported):
        np.testing.assert_allclose(run.model.apply({"params": run.params}, **inputs), expected,
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.smoke
def test_llama2c_stories260k_predicts_its_greedy_reference(data_dir):
    """Teacher-forced on llama2.c's own greedy output, the opened model's argmax at every
    position is llama2.c's next token."""
    folder = data_dir / "stories260K"
    reference = json.loads((folder / "greedy_reference.json").read_text())["generated_ids"]
    run = open_run(folder / "stories260K.bin", tokenizer=folder / "tok512.model")
    assert (run.source, run.step, run.layout) == ("llama2c", None, None)
    assert run.tokenizer.vocab_size == run.config.model.vocab_size == 512
    assert sum(leaf.size for leaf in jax.tree.leaves(run.params)) == 260_032
    ids = [1] + reference[:63]
    logits = run.model.apply({"params": run.params}, jnp.asarray([ids]))
    assert np.argmax(logits[0], axis=-1).tolist() == reference[:64]


# --- bad input ------------------------------------------------------------------------------

def one_line(err):
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_missing_path_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError) as err:
        open_run(tmp_path / "nowhere")
    assert "does not exist" in one_line(err)


def test_a_directory_that_is_not_a_run_says_what_it_lacks(tmp_path):
    (tmp_path / "notes.txt").write_text("not a run")
    with pytest.raises(CheckpointError) as err:
        open_run(tmp_path)
    assert "lacks config.yaml" in one_line(err) and "config.json" in one_line(err)


def test_a_config_without_parameters_says_what_it_lacks(tmp_path):
    (tmp_path / "config.yaml").write_text(to_yaml(load_config("gpt_tiny")))
    with pytest.raises(CheckpointError) as err:
        open_run(tmp_path)
    assert "neither params/ nor a finished checkpoints/<step>/" in one_line(err)


def test_a_run_of_another_run_format_is_refused_before_loading(tmp_path):
    layout = RunLayout.at(tmp_path)
    save_params(tmp_path, {"w": np.zeros(2, np.float32)})
    layout.config.write_text("{}")  # never read: the version check comes first
    layout.version.write_text(json.dumps({"lmjax": "9.0.0", "format": RUN_FORMAT + 1}))
    with pytest.raises(CheckpointError) as err:
        open_run(tmp_path)
    assert f"run format {RUN_FORMAT + 1}" in one_line(err) and "lmjax 9.0.0" in one_line(err)
    layout.version.write_text("0.3")
    with pytest.raises(CheckpointError, match="not an lmjax version record"):
        open_run(tmp_path)


def test_the_version_record_and_runs_written_before_it(tmp_path):
    layout = RunLayout.at(tmp_path / "run")
    assert check_version(layout) == 1  # no lmjax_version: an older run, format 1
    write_version(layout)
    assert json.loads(layout.version.read_text()) == {"lmjax": package_version(), "format": RUN_FORMAT}
    assert check_version(layout) == RUN_FORMAT


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(data_dir):
    folder = data_dir / "stories260K"
    bigger = SentencePieceTokenizer.from_file(folder / "tok512.model", extra_ids=4)
    with pytest.raises(DataError) as err:
        open_run(folder / "stories260K.bin", tokenizer=bigger)
    assert "has 516 ids but the model's vocabulary is 512" in one_line(err)
