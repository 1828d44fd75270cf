"""Bad Llama-family checkpoints: one-line CheckpointErrors naming the file (and the tensor or
option), raised before any weight is read, and `lmjax convert hf` writes nothing."""

import json
import shutil

import pytest

from lmjax.errors import CheckpointError
from lmjax.runs.importers.hf import from_pretrained
from lmjax.runs.importers.hf.export import export

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A tiny Llama in several shards with their index."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=24,
                                      num_hidden_layers=2, num_attention_heads=2)
    directory = tmp_path_factory.mktemp("sharded")
    transformers.LlamaForCausalLM(config).save_pretrained(directory, max_shard_size="8KB")
    assert len(list(directory.glob("model-*.safetensors"))) > 2
    return directory


def copy(source, target, **config_changes):
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(config_changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


def error_of(directory) -> str:
    with pytest.raises(CheckpointError) as err:
        from_pretrained(directory)
    message = str(err.value)
    assert "\n" not in message
    return message


def index_of(directory) -> dict:
    return json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]


def test_an_unsupported_architecture_lists_the_supported_classes(sharded, tmp_path):
    message = error_of(copy(sharded, tmp_path / "a", architectures=["LlamaForSequenceClassification"]))
    assert "LlamaForSequenceClassification" in message
    for supported in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "RobertaForMaskedLM"):
        assert supported in message


def test_a_missing_shard_is_named(sharded, tmp_path):
    directory = copy(sharded, tmp_path / "a")
    missing = sorted(set(index_of(directory).values()))[1]
    (directory / missing).unlink()
    message = error_of(directory)
    assert missing in message and "model.safetensors.index.json" in message


def test_a_tensor_in_two_shards_is_named(sharded, tmp_path):
    directory = copy(sharded, tmp_path / "a")
    weight_map = index_of(directory)
    first, second = sorted(set(weight_map.values()))[:2]
    stray = next(name for name, shard in weight_map.items() if shard == first)
    merged = {**safetensors_numpy.load_file(directory / second),
              stray: safetensors_numpy.load_file(directory / first)[stray]}
    safetensors_numpy.save_file(merged, directory / second, metadata={"format": "pt"})
    message = error_of(directory)
    assert stray in message and first in message and second in message


def test_an_index_that_misplaces_a_tensor_is_named(sharded, tmp_path):
    directory = copy(sharded, tmp_path / "a")
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    shards = list(index["weight_map"].values())
    name, shard = next((n, s) for n, s in index["weight_map"].items() if shards.count(s) > 1)
    other = next(s for s in shards if s != shard)  # still named by other tensors
    index["weight_map"][name] = other
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    message = error_of(directory)
    assert name in message and other in message and shard in message


def test_a_parameter_whose_shape_does_not_match_its_config(sharded, tmp_path):
    message = error_of(copy(sharded, tmp_path / "a", intermediate_size=32))
    assert "mlp.gate_proj.weight" in message and "(24, 16)" in message and "(32, 16)" in message
    message = error_of(copy(sharded, tmp_path / "b", num_key_value_heads=1))
    assert "self_attn.k_proj.weight" in message and "(8, 16)" in message


@pytest.mark.parametrize("kind", ["yarn", "dynamic"])
def test_another_rope_scaling_type_is_named_with_the_supported_ones(sharded, tmp_path, kind):
    rope = {"rope_type": kind, "rope_theta": 10000.0, "factor": 2.0}
    message = error_of(copy(sharded, tmp_path / kind, rope_parameters=rope))
    assert repr(kind) in message and "linear" in message and "llama3" in message


def test_the_older_rope_scaling_key_is_read_too(sharded, tmp_path):
    """Configs written before transformers 5 say rope_theta and rope_scaling {"type": ...}."""
    directory = copy(sharded, tmp_path / "a", rope_parameters=None, rope_theta=5e5,
                     rope_scaling={"type": "su", "factor": 2.0})
    assert "'su'" in error_of(directory)
    config = json.loads((directory / "config.json").read_text())
    config["rope_scaling"] = {"type": "linear", "factor": 2.0}
    (directory / "config.json").write_text(json.dumps(config))
    model, _ = from_pretrained(directory)
    assert (model.config.rope_theta, model.config.rope_scaling, model.config.rope_scaling_factor) == (
        5e5, "linear", 2.0)


def test_mixed_attention_and_mlp_biases_are_refused(sharded, tmp_path):
    assert "attention_bias=True" in error_of(copy(sharded, tmp_path / "a", attention_bias=True))


def test_convert_writes_nothing_for_a_bad_checkpoint(sharded, tmp_path):
    directory = copy(sharded, tmp_path / "a", rope_parameters={"rope_type": "yarn", "factor": 2.0})
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="yarn"):
        export(directory, out)
    assert not out.exists()


@pytest.mark.parametrize("options, named", [
    (dict(rope_scaling="yarn"), "model.rope_scaling='yarn' is not one of none, linear, llama3"),
    (dict(rope_scaling="linear", rope_scaling_factor=0.0), "model.rope_scaling_factor=0.0"),
    (dict(rope_scaling="llama3", rope_low_freq_factor=4.0), "model.rope_high_freq_factor=4.0"),
    (dict(qkv_bias=True, use_bias=True), "model.qkv_bias=true"),
])
def test_the_new_model_options_are_validated(options, named):
    from lmjax.config import ModelConfig, validate_model
    from lmjax.errors import ConfigError

    llama = dict(norm="rmsnorm", position="rope", mlp="swiglu", use_bias=False)
    validate_model(ModelConfig(**llama))
    with pytest.raises(ConfigError) as err:
        validate_model(ModelConfig(**{**llama, **options}))
    assert str(err.value).startswith(named) and "\n" not in str(err.value)
