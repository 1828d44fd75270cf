"""`lmjax convert to-hf`: lmjax runs and exports written for transformers, checked against
transformers itself. Logits of the export in transformers equal lmjax's (max |Δ| <= 1e-4 in
float32); transformers' tokenizer encodes as lmjax's; HF -> lmjax -> HF gives back the very
tensors transformers saved; sharded and bfloat16 exports load."""

import dataclasses
import json

import numpy as np
import pytest
from hf_export_helpers import (TEXTS, TOLERANCE, feeds, hf_logits, lmjax_logits, load_hf,
                               random_export, to_hf)

from lmjax import cli
from lmjax.config import ModelConfig
from lmjax.runs import open_run

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file  # noqa: E402

TRAIN_STEPS = 2
# A GPT trained with scanned layers also exports (its parameters come stacked); one with
# RMSNorm, RoPE and SwiGLU exports as LlamaForCausalLM.
LLAMA_LIKE = ["model.norm=rmsnorm", "model.position=rope", "model.mlp=swiglu", "model.use_bias=false",
              "model.n_kv_heads=2"]
TRAINED = {"gpt_tiny": ("gpt_tiny", ["model.scan_layers=true"]), "bert_tiny": ("bert_tiny", []),
           "t5_tiny": ("t5_tiny", []), "gpt_llama": ("gpt_tiny", LLAMA_LIKE)}
HF_CLASSES = {"gpt_tiny": "GPT2LMHeadModel", "bert_tiny": "BertForMaskedLM",
              "t5_tiny": "T5ForConditionalGeneration", "gpt_llama": "LlamaForCausalLM"}


@pytest.fixture(scope="module", params=sorted(TRAINED))
def trained(request, tmp_path_factory):
    """A run of `lmjax train` (its own tokenizer, trained on tinyshakespeare) at a checkpoint."""
    run_dir = tmp_path_factory.mktemp(request.param)
    preset, options = TRAINED[request.param]
    code = cli.main(["train", "--config", preset, f"run_dir={run_dir}",
                     f"train.steps={TRAIN_STEPS}", f"checkpoint.every={TRAIN_STEPS}",
                     "train.eval_every=1000", "train.eval_batches=1", "train.peak_flops=1e12",
                     *options])
    assert code == 0
    return request.param, run_dir


def test_a_trained_run_exports_with_equal_logits_and_tokenizer(trained, tmp_path):
    name, trained = trained
    export = to_hf(trained, tmp_path / "hf")
    assert json.loads((export / "config.json").read_text())["architectures"] == [HF_CLASSES[name]]
    run = open_run(trained)
    arch = run.config.model.arch
    inputs = feeds(arch, run.config.model.vocab_size)
    ours, theirs = lmjax_logits(trained, inputs), hf_logits(load_hf(export), inputs)
    assert ours.shape == theirs.shape
    assert np.max(np.abs(ours - theirs)) <= TOLERANCE

    tokenizer = transformers.AutoTokenizer.from_pretrained(export)
    for sample in TEXTS:
        assert tokenizer(sample, add_special_tokens=False)["input_ids"] == run.tokenizer.encode(sample)
    config = json.loads((export / "generation_config.json").read_text())
    assert (config.get("bos_token_id"), config.get("eos_token_id"), config.get("pad_token_id")) == (
        run.tokenizer.bos_id, run.tokenizer.eos_id, run.tokenizer.pad_id)
    if arch == "t5":  # span corruption feeds the decoder the padding id first
        assert config["decoder_start_token_id"] == run.tokenizer.pad_id
    specials = run.tokenizer.special_tokens
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in specials} == specials


RANDOM_MODELS = {
    # GPT-2 with exact GELU, its own output layer and no biases at all (written as zeros).
    "gpt_untied_exact_gelu_no_bias": ModelConfig(
        arch="gpt", vocab_size=97, d_model=24, n_layers=2, n_heads=3, d_ff=40, max_len=16,
        mlp="gelu_exact", tie_embeddings=False, use_bias=False),
    "gpt_relu": ModelConfig(arch="gpt", vocab_size=97, d_model=16, n_layers=1, n_heads=2,
                            d_ff=24, max_len=16, mlp="relu", norm_eps=1e-6),
    "bert_nsp_untied": ModelConfig(
        arch="bert", vocab_size=97, d_model=24, n_layers=2, n_heads=4, d_ff=40, max_len=16,
        norm_eps=1e-12, mlp="gelu_exact", nsp=True, tie_embeddings=False, type_vocab_size=2),
    "t5_v1_0": ModelConfig(
        arch="t5", vocab_size=97, d_model=24, n_layers=2, n_decoder_layers=3, n_heads=4,
        head_dim=6, d_ff=40, max_len=16, norm="rmsnorm", norm_eps=1e-6, position="relative",
        mlp="relu", use_bias=False, relpos_buckets=8, relpos_max_distance=12),
    "t5_swiglu_untied": ModelConfig(
        arch="t5", vocab_size=97, d_model=24, n_layers=1, n_heads=3, head_dim=10, d_ff=40,
        max_len=16, norm="rmsnorm", norm_eps=1e-6, position="relative", mlp="swiglu",
        use_bias=False, tie_embeddings=False, relpos_buckets=8, relpos_max_distance=12),
}


@pytest.mark.parametrize("name", sorted(RANDOM_MODELS))
def test_random_models_of_every_exported_shape_match(name, tmp_path):
    model = RANDOM_MODELS[name]
    source = random_export(tmp_path / "lmjax", model, seed=len(name))
    export = to_hf(source, tmp_path / "hf")
    inputs = feeds(model.arch, model.vocab_size, seed=1)
    hf = load_hf(export)
    assert np.max(np.abs(lmjax_logits(source, inputs) - hf_logits(hf, inputs))) <= TOLERANCE
    if model.nsp:  # BertForPreTraining: the next-sentence head as well
        run = open_run(source)
        _, nsp = run.model.apply({"params": run.params}, **inputs)
        with torch.no_grad():
            theirs = hf(**{key: torch.tensor(value) for key, value in inputs.items()})
        assert np.max(np.abs(np.asarray(nsp) - theirs.seq_relationship_logits.numpy())) <= TOLERANCE


def test_a_rope_rmsnorm_swiglu_gpt_exports_as_llama(tmp_path):
    model = ModelConfig(arch="gpt", vocab_size=97, d_model=32, n_layers=2, n_heads=4,
                        n_kv_heads=2, d_ff=48, max_len=16, norm="rmsnorm", norm_eps=1e-6,
                        position="rope", rope_theta=500.0, mlp="swiglu", use_bias=False,
                        tie_embeddings=False)
    source = random_export(tmp_path / "lmjax", model, seed=7)
    export = to_hf(source, tmp_path / "hf")
    assert json.loads((export / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    inputs = feeds("gpt", model.vocab_size, seed=4)
    assert np.max(np.abs(lmjax_logits(source, inputs) - hf_logits(load_hf(export), inputs))) <= TOLERANCE


def hf_models():
    """Tiny random transformers models of every class lmjax imports and exports."""
    gpt2 = dict(vocab_size=99, n_embd=24, n_head=3, n_layer=2, n_positions=16, bos_token_id=0,
                eos_token_id=0)
    bert = dict(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=40, max_position_embeddings=16, type_vocab_size=3)
    t5 = dict(vocab_size=99, d_model=24, d_kv=6, num_heads=4, d_ff=40, num_layers=2,
              relative_attention_num_buckets=8, relative_attention_max_distance=12)
    return {
        "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(**gpt2)),
        "gpt2_untied": lambda: transformers.GPT2LMHeadModel(
            transformers.GPT2Config(**gpt2, tie_word_embeddings=False)),
        "bert": lambda: transformers.BertForMaskedLM(transformers.BertConfig(**bert)),
        "bert_untied": lambda: transformers.BertForMaskedLM(
            transformers.BertConfig(**bert, tie_word_embeddings=False)),
        "bert_pretraining": lambda: transformers.BertForPreTraining(transformers.BertConfig(**bert)),
        "t5_v1_0": lambda: transformers.T5ForConditionalGeneration(
            transformers.T5Config(**t5, num_decoder_layers=3)),
        # transformers 5 builds v1.1 tied but unscaled: lmjax holds it untied, the export ties it back
        "t5_v1_1_tied": lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
            **t5, feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
        "t5_v1_1": lambda: _untied_t5(transformers.T5Config(
            **t5, feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    }


def _untied_t5(config):
    model = transformers.T5ForConditionalGeneration(config)
    model.lm_head.weight = torch.nn.Parameter(torch.randn(config.vocab_size, config.d_model))
    return model


@pytest.mark.parametrize("name", sorted(hf_models()))
def test_hf_to_lmjax_to_hf_gives_back_the_same_tensors(name, tmp_path):
    torch.manual_seed(len(name))
    original = hf_models()[name]()
    with torch.no_grad():  # no tensor left at a value (zero, one) a mapping could invent
        for tensor in original.state_dict().values():
            tensor.add_(torch.randn_like(tensor) * 0.1)
    original.eval().save_pretrained(tmp_path / "original")
    assert cli.main(["convert", "from-hf", str(tmp_path / "original"), str(tmp_path / "lmjax")]) == 0
    export = to_hf(tmp_path / "lmjax", tmp_path / "back")
    before = load_file(tmp_path / "original" / "model.safetensors")
    after = load_file(export / "model.safetensors")
    assert sorted(after) == sorted(before)
    # An untied BertForMaskedLM adds cls.predictions.decoder.bias and never reads this one.
    unused = {"cls.predictions.bias"} if name == "bert_untied" else set()
    for key, value in before.items():
        if key in unused:
            continue
        assert after[key].dtype == value.dtype and np.array_equal(after[key], value), key
    config = json.loads((export / "config.json").read_text())
    assert config["architectures"] == original.config.architectures


@pytest.fixture(scope="module")
def gpt_export(tmp_path_factory):
    """A random lmjax GPT export and its float32 transformers export."""
    directory = tmp_path_factory.mktemp("gpt")
    model = dataclasses.replace(RANDOM_MODELS["gpt_relu"], n_layers=3, d_model=32, vocab_size=120)
    source = random_export(directory / "lmjax", model, seed=5)
    return source, to_hf(source, directory / "hf")


def test_a_small_shard_size_writes_numbered_shards_and_an_index(gpt_export, tmp_path):
    source, single = gpt_export
    sharded = to_hf(source, tmp_path / "sharded", "--shard-size", "8KB")
    shards = sorted(path.name for path in sharded.glob("model-*.safetensors"))
    assert len(shards) > 2 and not (sharded / "model.safetensors").exists()
    assert shards == [f"model-{k:05d}-of-{len(shards):05d}.safetensors"
                      for k in range(1, len(shards) + 1)]
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    whole = load_file(single / "model.safetensors")
    assert sorted(index["weight_map"]) == sorted(whole)
    assert index["metadata"]["total_size"] == sum(value.nbytes for value in whole.values())
    for shard in shards:
        tensors = load_file(sharded / shard)
        assert sum(value.nbytes for value in tensors.values()) <= 8000 or len(tensors) == 1
        assert all(index["weight_map"][key] == shard for key in tensors)
    inputs = feeds("gpt", 120, seed=2)
    assert np.array_equal(hf_logits(load_hf(sharded), inputs), hf_logits(load_hf(single), inputs))


def test_a_bfloat16_export_holds_the_rounded_weights_and_loads(gpt_export, tmp_path):
    source, single = gpt_export
    export = to_hf(source, tmp_path / "bf16", "--dtype", "bfloat16")
    assert json.loads((export / "config.json").read_text())["dtype"] == "bfloat16"
    halves = load_file(export / "model.safetensors")
    for key, value in load_file(single / "model.safetensors").items():
        assert halves[key].dtype.name == "bfloat16", key
        # bfloat16 keeps float32's top 16 bits; round to nearest even, by hand
        bits = value.view(np.uint32)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        assert np.array_equal(halves[key].view(np.uint16), rounded), key
    hf = load_hf(export, dtype=torch.bfloat16)
    assert next(hf.parameters()).dtype == torch.bfloat16
    inputs = feeds("gpt", 120, seed=3)
    assert np.max(np.abs(hf_logits(hf, inputs) - lmjax_logits(source, inputs))) < 0.1
