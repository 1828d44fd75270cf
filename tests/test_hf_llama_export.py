"""The Llama exporter mapping (`lmjax.runs.exporters.llama`): HF -> lmjax -> HF gives back the
tensors save_pretrained wrote, bit for bit, and LlamaForCausalLM.from_pretrained on the
written directory gives the original model's logits; lmjax-made models export with parity;
what LlamaForCausalLM cannot express is named in one line."""

import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from lmjax.config import ModelConfig
from lmjax.models import build_model
from lmjax.runs.exporters import llama as exporter
from lmjax.runs.importers.hf import load
from lmjax.runs.importers.hf.weights import materialize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

VOCAB = 80
LLAMA3 = {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}


def tiny(config_class, model_class, seed, **options):
    torch.manual_seed(seed)
    settings = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = model_class(config_class(**{**settings, **options})).float().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                parameter.copy_(torch.randn_like(parameter))
    return model


def export_to(directory, params, model_config):
    """What the export command's writer does, minus dtype casting and sharding."""
    assert exporter.unsupported(model_config) is None
    directory.mkdir()
    safetensors_numpy.save_file(exporter.state_dict(params, model_config),
                                directory / "model.safetensors", metadata={"format": "pt"})
    config = {**exporter.hf_config(model_config), "torch_dtype": "float32"}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids)).logits.numpy()


IDS = np.random.default_rng(0).integers(0, VOCAB, (2, 13))


@pytest.mark.parametrize("options", [
    dict(rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=LLAMA3),
    dict(tie_word_embeddings=True, rope_scaling={"rope_type": "linear", "factor": 2.0}),
    dict(attention_bias=True, mlp_bias=True, head_dim=16),
], ids=["untied_llama3", "tied_linear", "biases_head_dim"])
def test_llama_round_trips_exactly(tmp_path, options):
    hf = tiny(transformers.LlamaConfig, transformers.LlamaForCausalLM, 1, **options)
    hf.save_pretrained(tmp_path / "hf")
    model_config, params = load(tmp_path / "hf")
    exported = exporter.state_dict(materialize(params), model_config)
    original = safetensors_numpy.load_file(tmp_path / "hf" / "model.safetensors")
    assert set(exported) == set(original)
    for name, value in original.items():
        assert exported[name].dtype == np.float32
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    directory = export_to(tmp_path / "out", materialize(params), model_config)
    reloaded = transformers.LlamaForCausalLM.from_pretrained(directory).eval()
    np.testing.assert_array_equal(logits(reloaded, IDS), logits(hf, IDS))


def test_qwen2_biases_export_as_llama_with_a_zero_o_proj_bias(tmp_path):
    hf = tiny(transformers.Qwen2Config, transformers.Qwen2ForCausalLM, 2, rms_norm_eps=1e-4)
    hf.save_pretrained(tmp_path / "hf")
    model_config, params = load(tmp_path / "hf")
    exported = exporter.state_dict(materialize(params), model_config)
    original = safetensors_numpy.load_file(tmp_path / "hf" / "model.safetensors")
    extra = {name for name in exported if name.endswith("o_proj.bias")}
    assert set(exported) - extra == set(original) and len(extra) == 2
    assert all(not exported[name].any() for name in extra)
    for name, value in original.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    directory = export_to(tmp_path / "out", materialize(params), model_config)
    reloaded = transformers.LlamaForCausalLM.from_pretrained(directory).eval()
    assert np.max(np.abs(logits(reloaded, IDS) - logits(hf, IDS))) <= 1e-5
    again, _ = load(directory)  # and back: a zero o_proj bias reads as q/k/v-only biases
    assert again.qkv_bias and not again.use_bias


@pytest.mark.parametrize("options", [
    dict(scan_layers=True, tie_embeddings=False, rope_scaling="linear", rope_scaling_factor=3.0),
    dict(use_bias=True, n_kv_heads=1, head_dim=6, rope_theta=1234.0),
    dict(qkv_bias=True, rope_scaling="llama3", rope_scaling_factor=8.0, rope_original_max_len=8),
])
def test_lmjax_made_models_export_with_parity(tmp_path, options):
    """Trained-in-lmjax parameters (here random, biases included) give transformers the
    same logits as lmjax."""
    settings = dict(arch="gpt", vocab_size=VOCAB, d_model=24, n_layers=2, n_heads=4, d_ff=40,
                    max_len=32, norm="rmsnorm", norm_eps=1e-5, position="rope", mlp="swiglu",
                    use_bias=False, dtype="float32")
    model_config = ModelConfig(**{**settings, **options})
    model = build_model(model_config)
    leaves, tree = jax.tree.flatten(nn.meta.unbox(model.init(jax.random.key(3), input_ids=IDS)["params"]))
    keys = jax.random.split(jax.random.key(4), len(leaves))  # nonzero biases, norms away from 1
    params = tree.unflatten([np.asarray(leaf + 0.3 * jax.random.normal(key, leaf.shape))
                             for leaf, key in zip(leaves, keys)])
    ours = np.asarray(model.apply({"params": params}, input_ids=IDS))
    directory = export_to(tmp_path / "out", params, model_config)
    reloaded = transformers.LlamaForCausalLM.from_pretrained(directory).eval()
    assert np.max(np.abs(logits(reloaded, IDS) - ours)) <= 1e-4


@pytest.mark.parametrize("field, value, named", [
    ("position", "learned", "model.position=learned: LlamaForCausalLM has only RoPE"),
    ("norm", "layernorm", "model.norm=layernorm: LlamaForCausalLM has only RMSNorm"),
    ("mlp", "gelu", "model.mlp=gelu: LlamaForCausalLM has only a SwiGLU MLP"),
    ("arch", "bert", "model.arch=bert"),
])
def test_what_llama_cannot_express_is_named(field, value, named):
    llama = dict(norm="rmsnorm", position="rope", mlp="swiglu", use_bias=False)
    assert exporter.unsupported(ModelConfig(**llama)) is None
    reason = exporter.unsupported(ModelConfig(**{**llama, field: value}))
    assert reason is not None and reason.startswith(named) and "\n" not in reason
    assert exporter.HF_CLASS == "LlamaForCausalLM"


def test_llama2c_stories260k_exported_reproduces_llama2c_in_transformers(tmp_path, data_dir):
    """An independent reference for the RoPE reordering: llama2.c's own greedy output of
    stories260K (interleaved RoPE, as lmjax) from transformers' LlamaForCausalLM (halves)."""
    from lmjax.runs.importers import llama2c

    folder = data_dir / "stories260K"
    reference = json.loads((folder / "greedy_reference.json").read_text())["generated_ids"][:60]
    model_config, params = llama2c.load(folder / "stories260K.bin")
    hf = transformers.LlamaForCausalLM.from_pretrained(
        export_to(tmp_path / "out", params, model_config)).eval()
    with torch.no_grad():
        generated = hf.generate(torch.tensor([[1]]), max_new_tokens=60, do_sample=False,
                                min_new_tokens=60, pad_token_id=0)
    assert generated[0, 1:].tolist() == reference
