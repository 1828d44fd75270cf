"""GPT with an attention mask: left- and right-padded batches score as transformers' GPT-2 does
and as each row alone, with and without the key/value cache; batched generation of prompts
of different lengths equals generating each prompt alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.decoding import Generator, Sampling
from lmjax.models.gpt import init_cache
from lmjax.runs.importers.hf import from_pretrained

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 99
LENGTHS = [7, 4, 9]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=64, n_head=4, n_layer=2,
                                     n_positions=32, bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    directory = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(directory)
    model, params = from_pretrained(directory)
    return hf, model, params


def prompts():
    rng = np.random.default_rng(0)
    return [rng.integers(1, VOCAB, length).astype(np.int32) for length in LENGTHS]


def padded(rows, left: bool):
    length = max(len(row) for row in rows)
    ids = np.zeros((len(rows), length), np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for b, row in enumerate(rows):
        span = slice(length - len(row), length) if left else slice(0, len(row))
        ids[b, span], mask[b, span] = row, 1
    return ids, mask


def hf_logits(hf, ids, mask):
    """transformers' scores, with the position ids its `generate` uses for padded rows."""
    position_ids = np.where(mask == 1, np.cumsum(mask, axis=1) - 1, 1)
    with torch.no_grad():
        return hf(input_ids=torch.tensor(ids, dtype=torch.long),
                  attention_mask=torch.tensor(mask, dtype=torch.long),
                  position_ids=torch.tensor(position_ids, dtype=torch.long)).logits.numpy()


@pytest.mark.parametrize("left", [True, False], ids=["left", "right"])
def test_padded_batch_matches_transformers_and_each_row_alone(gpt2, left):
    hf, model, params = gpt2
    apply = jax.jit(model.apply)
    ids, mask = padded(prompts(), left)
    ours = np.asarray(apply({"params": params}, ids, attention_mask=mask))
    theirs = hf_logits(hf, ids, mask)
    real = mask == 1
    assert np.abs(ours[real] - theirs[real]).max() <= 1e-4
    for b, row in enumerate(prompts()):
        alone = np.asarray(apply({"params": params}, row[None]))[0]
        np.testing.assert_allclose(ours[b][real[b]], alone, atol=1e-4)


def test_cached_decoding_with_a_mask_matches_the_full_masked_pass(gpt2):
    """A left-padded prompt prefilled, then three steps; the mask covers every cache slot."""
    _, model, params = gpt2
    ids, mask = padded(prompts(), left=True)
    more = np.random.default_rng(1).integers(1, VOCAB, (3, 3)).astype(np.int32)
    full_ids = np.concatenate([ids, more], axis=1)
    full_mask = np.concatenate([mask, np.ones_like(more)], axis=1)
    apply = jax.jit(lambda ids, mask, cache=None: model.apply(
        {"params": params}, ids, cache=cache, attention_mask=mask))
    expected = np.asarray(apply(full_ids, full_mask))
    logits, cache = apply(ids, full_mask, init_cache(model.config, 3, full_ids.shape[1]))
    pieces = [logits]
    for t in range(3):
        logits, cache = apply(more[:, t:t + 1], full_mask, cache)
        pieces.append(logits)
    got = np.asarray(jnp.concatenate(pieces, axis=1))
    real = full_mask == 1
    np.testing.assert_allclose(got[real], expected[real], atol=1e-5)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "uncached"])
def test_batched_prompts_of_different_lengths_generate_as_alone(gpt2, use_cache):
    """Greedy; rows stop independently at their own stop id and context end."""
    _, model, params = gpt2
    generator = Generator(model, params, Sampling(temperature=0))
    rows = [row.tolist() for row in prompts()]
    alone = [generator.generate(row, 6, use_cache=use_cache)[0] for row in rows]
    assert generator.generate(rows, 6, use_cache=use_cache) == alone
    stop = alone[1][2]
    stopped = generator.generate(rows, 6, stop_ids={stop}, use_cache=use_cache)
    assert stopped[1] == alone[1][:alone[1].index(stop)]
    assert stopped == [row[:row.index(stop)] if stop in row else row for row in alone]
    near_end = [rows[0] * 4, rows[1]]  # 28 tokens of a 32-token context: at most 5 new
    ends = generator.generate(near_end, 8, use_cache=use_cache)
    assert [len(row) for row in ends] == [5, 8]
    assert ends[1] == generator.generate(rows[1], 8, use_cache=use_cache)[0]
