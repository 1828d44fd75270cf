"""Llama, Mistral and Qwen2 import: tiny random transformers models built here, saved with
save_pretrained (single file, sharded, bfloat16) and loaded by lmjax, give transformers'
logits (max |Δ| <= 1e-4 in float32) with right and left padding, and greedy generation with
lmjax's KV-cache decoder equals transformers' `generate(do_sample=False)`."""

import jax
import numpy as np
import pytest

from lmjax.decoding import Generator, Sampling
from lmjax.runs.importers.hf import from_pretrained, load

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4
VOCAB = 97
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16}


def tiny(kind: str, seed: int = 0, **options):
    """A random float32 *ForCausalLM of `kind` (llama, mistral, qwen2) with 2 layers."""
    torch.manual_seed(seed)
    config_class, model_class = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    }[kind]
    settings = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                    bos_token_id=1, eos_token_id=2, pad_token_id=0)
    settings.update(options)
    model = model_class(config_class(**settings)).float().eval()
    with torch.no_grad():  # random norm scales and biases, so a wrong mapping cannot hide
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                parameter.copy_(torch.randn_like(parameter) * 0.5 + (name.endswith("weight")))
    return model


def saved(model, directory, **options):
    model.save_pretrained(directory, **options)
    return directory


def batch(seed: int, length: int = 12, padding: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """Ids and a mask: row 0 full, row 1 padded by 5 on the given side."""
    ids = np.random.default_rng(seed).integers(3, VOCAB, (2, length))
    mask = np.ones((2, length), np.int64)
    if padding == "right":
        mask[1, length - 5:] = 0
    else:
        mask[1, :5] = 0
    ids[mask == 0] = 0
    return ids, mask


def hf_logits(model, ids, mask) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()


def lmjax_logits(directory, ids, mask) -> np.ndarray:
    model, params = from_pretrained(directory)
    return np.asarray(jax.jit(model.apply)({"params": params}, input_ids=ids, attention_mask=mask))


def assert_same_logits(hf_model, directory, seed=0, tolerance=TOLERANCE):
    """Real tokens only: transformers leaves padded positions' outputs arbitrary."""
    for padding in ("right", "left"):
        ids, mask = batch(seed, padding=padding)
        ours, theirs = lmjax_logits(directory, ids, mask), hf_logits(hf_model, ids, mask)
        real = mask.astype(bool)
        assert np.max(np.abs(ours[real] - theirs[real])) <= tolerance, padding


CASES = {
    "llama_gqa_untied": ("llama", dict(num_key_value_heads=2, rms_norm_eps=1e-5)),
    "llama_tied_theta": ("llama", dict(tie_word_embeddings=True, rope_theta=500000.0)),
    "llama_linear": ("llama", dict(rope_scaling={"rope_type": "linear", "factor": 4.0})),
    "llama_llama3": ("llama", dict(num_key_value_heads=1, rope_theta=500000.0,
                                   rope_scaling=LLAMA3_SCALING)),
    "llama_head_dim": ("llama", dict(head_dim=16)),
    "llama_biases": ("llama", dict(attention_bias=True, mlp_bias=True)),
    "mistral_gqa": ("mistral", dict(num_key_value_heads=2, sliding_window=32)),
    "qwen2_biases": ("qwen2", dict(num_key_value_heads=2, rms_norm_eps=1e-3)),
    "qwen2_tied": ("qwen2", dict(tie_word_embeddings=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers_with_left_and_right_padding(tmp_path, case):
    kind, options = CASES[case]
    hf = tiny(kind, seed=len(case), **options)
    assert_same_logits(hf, saved(hf, tmp_path), seed=len(case))


def test_the_config_carries_every_option(tmp_path):
    config, _ = load(saved(tiny("llama", num_key_value_heads=1, rope_theta=500000.0,
                                rms_norm_eps=1e-5, rope_scaling=LLAMA3_SCALING), tmp_path / "l"))
    assert (config.n_heads, config.n_kv_heads, config.rope_theta, config.norm_eps) == (4, 1, 5e5, 1e-5)
    assert (config.rope_scaling, config.rope_scaling_factor, config.rope_original_max_len) == ("llama3", 8.0, 16)
    assert not config.tie_embeddings and not config.use_bias and not config.qkv_bias
    qwen, _ = load(saved(tiny("qwen2", tie_word_embeddings=True), tmp_path / "q"))
    assert qwen.qkv_bias and not qwen.use_bias and qwen.tie_embeddings
    mistral, _ = load(saved(tiny("mistral", sliding_window=32), tmp_path / "m"))
    assert mistral.max_len == 32  # the window cannot matter within max_len


def test_sharded_checkpoints_load_like_single_files(tmp_path):
    hf = tiny("qwen2", seed=3, num_key_value_heads=2)
    directory = saved(hf, tmp_path, max_shard_size="20KB")
    shards = sorted(path.name for path in directory.glob("model-*.safetensors"))
    assert len(shards) > 2 and (directory / "model.safetensors.index.json").is_file()
    assert_same_logits(hf, directory, seed=3)


def test_bfloat16_checkpoints_load_exactly(tmp_path):
    """The bf16 values widen exactly, so lmjax equals transformers run on the widened weights."""
    hf = tiny("llama", seed=4, num_key_value_heads=2)
    directory = saved(hf.to(torch.bfloat16), tmp_path)
    assert '"dtype": "bfloat16"' in (directory / "config.json").read_text()
    assert_same_logits(hf.float(), directory, seed=4)


def test_greedy_generation_equals_transformers_generate(tmp_path):
    hf = tiny("llama", seed=5, num_key_value_heads=2, rope_scaling=LLAMA3_SCALING)
    model, params = from_pretrained(saved(hf, tmp_path))
    prompts = [[1, 17, 33, 9, 60], [1, 5, 71]]
    generator = Generator(model, params, Sampling(temperature=0))
    ours = generator.generate(prompts, 12)
    for prompt, generated in zip(prompts, ours):
        with torch.no_grad():
            theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                 min_new_tokens=12, pad_token_id=0)
        assert generated == theirs[0, len(prompt):].tolist()
