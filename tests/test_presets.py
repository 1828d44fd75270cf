"""Model presets: every published shape counts the published number of parameters (within
2%, in the convention its source uses), presets merge with overrides key by key, and bad
presets fail with one line. Counts come from `jax.eval_shape`, so nothing is allocated."""

import dataclasses
import math

import pytest

from lmjax.config import ModelConfig, load_config, presets
from lmjax.errors import ConfigError
from lmjax.scaling import param_counts
from lmjax.scaling.params import abstract_params

# name -> (published parameter count, where it is published). Every family's published
# figure is the TOTAL, with the token (and position) embeddings, counted once when tied.
PUBLISHED = {
    # GPT-2: OpenAI's release names (github.com/openai/gpt-2), totals with embeddings.
    "gpt2-124m": (124e6, "GPT-2 release"),
    "gpt2-355m": (355e6, "GPT-2 release"),
    "gpt2-774m": (774e6, "GPT-2 release"),
    "gpt2-1.5b": (1558e6, "GPT-2 release (1558M)"),
    # GPT-3: Brown et al. 2020, Table 2.1 "n_params", totals with embeddings.
    "gpt3-small": (125e6, "GPT-3 Table 2.1"),
    "gpt3-medium": (350e6, "GPT-3 Table 2.1"),
    "gpt3-large": (760e6, "GPT-3 Table 2.1"),
    "gpt3-xl": (1.3e9, "GPT-3 Table 2.1"),
    "gpt3-2.7b": (2.7e9, "GPT-3 Table 2.1"),
    "gpt3-6.7b": (6.7e9, "GPT-3 Table 2.1"),
    "gpt3-13b": (13.0e9, "GPT-3 Table 2.1"),
    "gpt3-175b": (175.0e9, "GPT-3 Table 2.1"),
    # BERT: Devlin et al. 2018, Section 3, totals with embeddings (no NSP head here).
    "bert-base": (110e6, "BERT paper"),
    "bert-large": (340e6, "BERT paper"),
    # RoBERTa: Liu et al. 2019 / fairseq release, totals with embeddings.
    "roberta-base": (125e6, "RoBERTa release"),
    "roberta-large": (355e6, "RoBERTa release"),
    # T5 v1.0: Raffel et al. 2019, Section 3.7, totals with the shared embedding once. For
    # Large and 11B the paper's round figures (770M, 11B) are 4.4% and 2.7% off the released
    # checkpoints (737.7M, 11.3B); those are compared with the checkpoints.
    "t5-small": (60e6, "T5 paper"),
    "t5-base": (220e6, "T5 paper"),
    "t5-large": (737.7e6, "released T5-Large checkpoint"),
    "t5-3b": (2.8e9, "T5 paper"),
    "t5-11b": (11.3e9, "released T5-11B checkpoint"),
    # T5 v1.1: the released checkpoints (no paper), totals with embedding and untied head.
    "t5-v1_1-small": (77e6, "released checkpoint"),
    "t5-v1_1-base": (248e6, "released checkpoint"),
    "t5-v1_1-large": (783e6, "released checkpoint"),
    "t5-v1_1-xl": (2.85e9, "released checkpoint"),
    "t5-v1_1-xxl": (11.1e9, "released checkpoint"),
    # LLaMA: Touvron et al. 2023, Table 2, totals with embedding and untied head.
    "llama-7b": (6.7e9, "LLaMA Table 2"),
    "llama-13b": (13.0e9, "LLaMA Table 2"),
    "llama-33b": (32.5e9, "LLaMA Table 2"),
    "llama-65b": (65.2e9, "LLaMA Table 2"),
}


def preset_config(name: str, **changes) -> ModelConfig:
    return dataclasses.replace(ModelConfig(**presets()[name]), **changes)


def test_every_preset_has_a_published_count():
    assert sorted(presets()) == sorted(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_matches_published_count(name):
    published, source = PUBLISHED[name]
    counts = param_counts(preset_config(name))
    assert counts.total == counts.embedding + counts.non_embedding
    assert abs(counts.total / published - 1) < 0.02, (name, counts.total, published, source)


def test_gpt2_counts_exactly_and_splits_kaplan_style():
    """GPT-2 small: the released checkpoint's 124,439,808; Kaplan's non-embedding N leaves
    out the 50,257 x 768 token table and the 1,024 x 768 position table."""
    counts = param_counts(preset_config("gpt2-124m"))
    assert counts.total == 124_439_808
    assert counts.embedding == (50257 + 1024) * 768
    assert counts.non_embedding == 12 * (12 * 768**2 + 13 * 768) + 2 * 768


def test_untied_output_head_counts_as_embedding():
    tied = param_counts(preset_config("llama-7b", n_layers=1, tie_embeddings=True))
    untied = param_counts(preset_config("llama-7b", n_layers=1))
    assert untied.embedding - tied.embedding == 32000 * 4096
    assert untied.non_embedding == tied.non_embedding


@pytest.mark.parametrize("name", ["gpt2-124m", "bert-base", "roberta-base", "t5-small", "llama-7b"])
def test_counts_equal_transformers(name):
    """The same shape built by transformers (on the meta device: nothing allocated) holds
    exactly as many parameters: an independent check of every layer's count."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    build = {
        "gpt2-124m": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config()),
        "bert-base": lambda: transformers.BertForMaskedLM(transformers.BertConfig()),
        "t5-small": lambda: transformers.T5ForConditionalGeneration(transformers.T5Config()),
        "roberta-base": lambda: transformers.RobertaForMaskedLM(transformers.RobertaConfig(
            vocab_size=50265, max_position_embeddings=514, type_vocab_size=1)),
        "llama-7b": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, max_position_embeddings=2048)),
    }[name]
    with torch.device("meta"):
        reference = sum(p.numel() for p in build().parameters())
    assert param_counts(preset_config(name)).total == reference


def test_unknown_preset_is_one_line_listing_the_names():
    with pytest.raises(ConfigError) as err:
        load_config("gpt_tiny", ["model.preset=gpt5"])
    message = str(err.value)
    assert "\n" not in message and "'gpt5'" in message
    assert all(name in message for name in PUBLISHED)


def test_override_that_breaks_the_shape_is_one_line():
    with pytest.raises(ConfigError) as err:
        load_config("gpt_tiny", ["model.preset=gpt2-124m", "model.n_heads=7"])
    message = str(err.value)
    assert "\n" not in message
    assert "n_heads=7" in message and "d_model=768" in message


def test_preset_override_keeps_the_other_preset_keys():
    config = load_config("gpt_tiny", ["model.preset=llama-7b", "model.n_layers=2"])
    expected = {**presets()["llama-7b"], "n_layers": 2, "preset": "llama-7b"}
    assert {key: getattr(config.model, key) for key in expected} == expected
    assert config.train.steps == 20  # the file's run settings stay


def test_gpt3_small_config_is_the_preset_plus_run_settings():
    config = load_config("gpt3_small")
    preset = presets()["gpt3-small"]
    assert {key: getattr(config.model, key) for key in preset} == preset
    assert config.data.seq_len == config.model.max_len == 2048


@pytest.mark.parametrize("name", ["gpt2-124m", "bert-base", "t5-v1_1-small"])
def test_scanned_count_equals_the_looped_layout(name):
    """`param_counts` traces the scanned layout for speed; the looped one holds as many."""
    looped = abstract_params(preset_config(name, scan_layers=False))
    assert sum(math.prod(leaf.value.shape) for leaf in looped) == param_counts(preset_config(name)).total
