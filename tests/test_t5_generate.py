"""T5 generation: the encoder once, cached decoder self- and cross-attention; greedy output
equals transformers' `generate` on a padded batch of inputs of different lengths, and the
cached and uncached paths agree."""

import numpy as np
import pytest

from lmjax.config import ModelConfig
from lmjax.decoding import Sampling, T5Generator, make_generator
from lmjax.errors import ConfigError
from lmjax.models import build_model
from lmjax.models.t5 import init_cache
from lmjax.runs.importers.hf import from_pretrained

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 99
EOS = 1
LENGTHS = [9, 5, 12]


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, num_heads=4, d_ff=64,
                                   num_layers=2,  # transformers 5 caches need equal depths
                                   relative_attention_num_buckets=8,
                                   relative_attention_max_distance=16, decoder_start_token_id=0,
                                   pad_token_id=0, eos_token_id=EOS)
    hf = transformers.T5ForConditionalGeneration(config).eval()
    directory = tmp_path_factory.mktemp("t5")
    hf.save_pretrained(directory)
    model, params = from_pretrained(directory)
    return hf, model, params


def prompts():
    rng = np.random.default_rng(0)
    return [rng.integers(2, VOCAB, length).tolist() for length in LENGTHS]


def hf_generate(hf, rows, max_new_tokens):
    """transformers' greedy ids after the start token, each cut before its first EOS."""
    length = max(len(row) for row in rows)
    ids = torch.tensor([row + [0] * (length - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (length - len(row)) for row in rows])
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                          do_sample=False, num_beams=1)
    return [row[1:row.index(EOS)] if EOS in row else row[1:] for row in out.tolist()]


def test_greedy_generation_matches_transformers_on_a_padded_batch(t5):
    hf, model, params = t5
    generator = make_generator(model, params, Sampling(temperature=0), decoder_start_id=0)
    assert isinstance(generator, T5Generator)
    expected = hf_generate(hf, prompts(), max_new_tokens=10)
    assert any(len(row) >= 5 for row in expected)
    assert generator.generate(prompts(), 10, stop_ids={EOS}) == expected
    assert generator.generate(prompts()[1], 10, stop_ids={EOS}) == [expected[1]]


def test_cached_and_uncached_t5_generation_agree(t5):
    _, model, params = t5
    for sampling in (Sampling(temperature=0), Sampling(temperature=1.0, top_k=20, top_p=0.9)):
        generator = make_generator(model, params, sampling)
        cached = generator.generate(prompts(), 7, seed=3)
        assert cached == generator.generate(prompts(), 7, seed=3, use_cache=False)
        assert [len(row) for row in cached] == [7, 7, 7]


def test_an_encoder_only_model_cannot_generate():
    with pytest.raises(ConfigError, match="encoder-only") as err:
        make_generator(build_model(ModelConfig(arch="bert")), params={})
    assert "\n" not in str(err.value)


def test_a_decoder_mask_with_a_cache_is_refused(t5):
    _, model, params = t5
    ids = np.ones((1, 1), np.int32)
    with pytest.raises(ConfigError, match="decoder_attention_mask only without a cache"):
        model.apply({"params": params}, ids, np.zeros((1, 3, 32), np.float32),
                    decoder_attention_mask=ids, cache=init_cache(model.config, 1, 4),
                    method="decode")
