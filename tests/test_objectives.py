"""Masked LM and span corruption: the statistics the papers specify, exact reconstruction,
fixed shapes, losses on predicted positions only, and special ids from the tokenizer."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import load_config
from lmjax.errors import ConfigError, DataError
from lmjax.objectives import (
    MaskedLM, SpanCorruption, make_objective, objective_for, tokenizer_training_options,
)
from lmjax.objectives.masked_lm import word_tables
from lmjax.objectives.span_corruption import random_spans_helper, random_spans_noise_mask
from lmjax.tokenizers import SentencePieceTokenizer, WordPieceTokenizer

PAD, EOS, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = (PAD, EOS, CLS, SEP, MASK)
VOCAB = 200


def bert_objective(**options) -> MaskedLM:
    return MaskedLM(mask_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS, pad_id=PAD, cls_id=CLS,
                    sep_id=SEP, **options)


def selected(example: dict) -> np.ndarray:
    """Per input position, whether the example predicts it (from its masked_positions)."""
    chosen = np.zeros(len(example["input_ids"]), bool)
    chosen[example["masked_positions"][example["weights"] == 1]] = True
    return chosen


def windows(objective, count: int, seed: int = 0, low: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(low, VOCAB, (count, objective.window_length(32)))


# -- span corruption ---------------------------------------------------------------------

def test_window_and_targets_lengths_are_t5s():
    # T5 (and transformers' run_t5_mlm_flax) turn 512 inputs into 568 raw tokens, 114 targets.
    assert random_spans_helper(512, 0.15, 3.0) == (568, 114)
    objective = SpanCorruption(seq_len=512, vocab_end=32100, eos_id=EOS, pad_id=PAD)
    assert objective.window_length(512) == 568 and objective.targets_length == 114
    with pytest.raises(ConfigError, match="seq_len=512"):
        objective.window_length(256)


def reconstruct(example: dict, sentinel_0: int) -> list[int]:
    """The original tokens from inputs (up to EOS) and targets (sentinel-delimited spans)."""
    inputs = example["input_ids"][example["attention_mask"] == 1].tolist()
    targets = example["targets"][example["weights"] == 1].tolist()
    assert inputs[-1] == EOS
    spans, current = {}, None
    for token in targets:
        if token > sentinel_0 - 40:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    original = []
    for token in inputs[:-1]:
        original.extend(spans.pop(token) if token in spans else [token])
    assert targets[-1] == min(spans) and not any(spans.values()), "a final sentinel ends the targets"
    return original


def test_inputs_and_targets_reconstruct_the_window_for_many_seeds():
    objective = SpanCorruption(seq_len=32, vocab_end=VOCAB, eos_id=EOS, pad_id=PAD)
    length = objective.window_length(32)
    for seed in range(300):
        rng = np.random.default_rng(seed)
        window = rng.integers(5, VOCAB - 40, length)
        real = length if seed % 3 else int(rng.integers(0, length))  # tail windows too
        window[real:] = PAD
        example = objective.make_example(window, np.random.default_rng(seed))
        assert example["input_ids"].shape == (32,)
        assert example["targets"].shape == example["decoder_input_ids"].shape == (objective.targets_length,)
        if real == length:  # a full window fills both exactly
            assert example["attention_mask"].all() and example["weights"].all()
        if real:
            assert reconstruct(example, VOCAB - 1) == window[:real].tolist()
            assert example["targets"][0] == VOCAB - 1, "the first sentinel is the last id"
            n = int(example["weights"].sum())  # decoder inputs: the targets shifted right
            np.testing.assert_array_equal(example["decoder_input_ids"][1:n], example["targets"][:n - 1])
        else:
            assert not example["attention_mask"].any() and not example["weights"].any()
        assert example["decoder_input_ids"][0] == PAD


def span_length_probability(length: int, tokens: int, spans: int) -> float:
    """P(a span has `length` tokens) when `tokens` are cut uniformly into `spans` parts."""
    return math.comb(tokens - length - 1, spans - 2) / math.comb(tokens - 1, spans - 1)


def test_noise_density_and_span_lengths_match_t5_over_a_large_sample():
    length, samples = 568, 3000
    noise_spans, kept_spans, noise_tokens = [], [], 0
    rng = np.random.default_rng(0)
    for _ in range(samples):
        mask = random_spans_noise_mask(length, 0.15, 3.0, rng)
        assert not mask[0] and mask[-1], "kept span first, dropped span last"
        edges = np.flatnonzero(np.diff(mask.astype(int))) + 1
        runs = np.split(mask, edges)
        noise_spans += [len(r) for r in runs if r[0]]
        kept_spans += [len(r) for r in runs if not r[0]]
        noise_tokens += int(mask.sum())
    assert noise_tokens / (samples * length) == pytest.approx(0.15, abs=0.002)
    assert np.mean(noise_spans) == pytest.approx(3.0, abs=0.05)
    assert len(noise_spans) == len(kept_spans) == samples * 28
    # The span lengths follow a uniform random composition of 85 tokens into 28 spans.
    counts = np.bincount(noise_spans)
    for k in range(1, 6):
        expected = span_length_probability(k, 85, 28) * len(noise_spans)
        assert abs(counts[k] - expected) < 5 * math.sqrt(expected), k


@pytest.mark.smoke
def test_span_loss_counts_target_tokens_only():
    objective = SpanCorruption(seq_len=32, vocab_end=VOCAB, eos_id=EOS, pad_id=PAD)
    window = np.full(objective.window_length(32), PAD)
    window[:10] = np.arange(10, 20)
    batch = {k: v[None] for k, v in objective.make_example(window, np.random.default_rng(0)).items()}
    logits = jnp.zeros((1, objective.targets_length, VOCAB))
    loss, tokens, metrics = objective.loss(logits, batch)
    assert tokens == batch["weights"].sum() < objective.targets_length
    assert loss == pytest.approx(tokens * math.log(VOCAB), rel=1e-6)
    assert set(metrics) == {"accuracy"} and objective.loss_name == "span_loss"


# -- masked LM ---------------------------------------------------------------------------

def test_masking_selects_15_percent_never_specials_and_replaces_80_10_10():
    objective = bert_objective()
    predicted = kept = masked = randomised = 0
    for seed, window in enumerate(windows(objective, 400)):
        window[::7] = EOS  # document separators are special: never selected
        example = objective.make_example(window, np.random.default_rng(seed))
        ids = np.concatenate([[CLS], window, [SEP]])
        chosen = selected(example)
        candidates = ~np.isin(ids, SPECIALS)
        assert chosen.sum() == round(0.15 * candidates.sum())
        assert not np.any(chosen & ~candidates)
        np.testing.assert_array_equal(example["targets"][example["weights"] == 1], ids[chosen])
        np.testing.assert_array_equal(example["input_ids"][~chosen], ids[~chosen])
        inputs = example["input_ids"][chosen]
        predicted += chosen.sum()
        masked += np.sum(inputs == MASK)
        kept += np.sum(inputs == ids[chosen])
        changed = (inputs != MASK) & (inputs != ids[chosen])
        randomised += changed.sum()
        assert not np.isin(inputs[changed], SPECIALS).any()
    # A random replacement equals the original 1/195 of the time: count those as random.
    for share, expected in ((masked, 0.8), (kept, 0.1), (randomised, 0.1)):
        sigma = math.sqrt(expected * (1 - expected) / predicted)
        assert abs(share / predicted - expected) < 4 * sigma + 0.001, (share / predicted, expected)


def test_masking_is_deterministic_for_a_seed_and_handles_padding():
    objective = bert_objective()
    window = windows(objective, 1)[0]
    window[20:] = PAD
    first = objective.make_example(window, np.random.default_rng(7))
    again = objective.make_example(window, np.random.default_rng(7))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert first["input_ids"][0] == CLS and first["input_ids"][21] == SEP
    assert first["attention_mask"].sum() == 22 and not selected(first)[22:].any()


def test_whole_word_masking_selects_whole_words():
    pieces = ["[PAD]", "[EOS]", "[CLS]", "[SEP]", "[MASK]"] + [
        f"##p{i}" if i % 3 else f"w{i}" for i in range(5, VOCAB)
    ]
    joins_left, joins_right = word_tables("wordpiece", pieces)
    objective = bert_objective(joins_left=joins_left, joins_right=joins_right)
    for seed, window in enumerate(windows(objective, 100)):
        example = objective.make_example(window, np.random.default_rng(seed))
        ids = np.concatenate([[CLS], window, [SEP]])
        special = np.isin(ids, SPECIALS)
        word_starts = np.flatnonzero(~joins_left[ids] | special | np.roll(special, 1))
        for word in np.split(selected(example), word_starts)[1:]:
            assert word.all() or not word.any()
        assert 0 < example["weights"].sum() <= round(0.15 * len(window))


def test_word_tables_for_space_prefixed_pieces():
    joins_left, joins_right = word_tables("sentencepiece", ["He", "ll", "o", " there", ",", "K"])
    assert joins_left.tolist() == [True, True, True, False, False, True]
    assert joins_right.tolist() == [True, True, True, True, False, True]


def test_next_sentence_pairs():
    objective = bert_objective(nsp=True)
    assert objective.loss_name == "mlm_nsp_loss" and objective.window_length(32) == 58
    labels = []
    for seed in range(200):
        window = np.arange(5, 5 + objective.window_length(32))
        example = objective.make_example(window, np.random.default_rng(seed))
        types = example["token_type_ids"]
        ids = np.where(selected(example), 0, example["input_ids"])
        ids[selected(example)] = example["targets"][example["weights"] == 1]
        first, second = ids[types == 0], ids[types == 1]
        assert first[0] == CLS and first[-1] == SEP and second[-1] == SEP
        follows = second[0] == first[-2] + 1
        assert follows == (example["nsp_label"] == 0)
        labels.append(int(example["nsp_label"]))
    assert 0.4 < np.mean(labels) < 0.6


@pytest.mark.smoke
def test_mlm_loss_and_accuracy_count_selected_positions_only():
    objective = bert_objective()
    window = windows(objective, 1)[0]
    window[::3] = EOS  # fewer candidates than prediction slots: some slots stay empty
    example = objective.make_example(window, np.random.default_rng(0))
    batch = {k: v[None] for k, v in example.items()}
    rng = np.random.default_rng(1)
    slots = objective.max_predictions(32)
    logits = rng.normal(size=(1, slots, VOCAB)).astype(np.float32)  # at masked_positions
    chosen = example["weights"] == 1
    assert 0 < chosen.sum() < slots
    logits[0, chosen, example["targets"][chosen]] += 100.0  # every selected position right
    loss, tokens, metrics = objective.loss(jnp.asarray(logits), batch)
    assert tokens == chosen.sum() and metrics["accuracy"] == tokens
    assert float(loss) < 1e-3
    logits[0, ~chosen] = rng.normal(size=((~chosen).sum(), VOCAB)) * 50  # empty slots: no effect
    assert float(objective.loss(jnp.asarray(logits), batch)[0]) == pytest.approx(float(loss), abs=1e-6)


def test_nsp_loss_adds_the_mean_next_sentence_loss():
    objective = bert_objective(nsp=True)
    examples = [objective.make_example(np.arange(5, 63), np.random.default_rng(s)) for s in range(4)]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    mlm = jnp.zeros((4, objective.max_predictions(32), VOCAB))
    nsp = jnp.zeros((4, 2))
    loss, tokens, metrics = objective.loss((mlm, nsp), batch)
    assert float(loss / tokens) == pytest.approx(math.log(VOCAB) + math.log(2), rel=1e-5)
    assert float(metrics["nsp_loss"] / tokens) == pytest.approx(math.log(2), rel=1e-5)


# -- special ids from the tokenizer ------------------------------------------------------

def wordpiece(size: int = 60) -> WordPieceTokenizer:
    return WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                              + [chr(ord("a") + i % 26) + "#" * (i // 26) for i in range(size - 5)])


def test_objective_for_takes_bert_ids_from_a_wordpiece_tokenizer():
    config = load_config("bert_tiny", ["model.vocab_size=60", "data.whole_word_mask=true"])
    objective = objective_for(config, wordpiece())
    assert (objective.mask_id, objective.cls_id, objective.sep_id, objective.pad_id) == (4, 2, 3, 0)
    assert set(objective.special_ids) == {0, 1, 2, 3, 4} and objective.whole_word


@pytest.fixture(scope="module")
def spm_with_sentinels(tmp_path_factory):
    text = tmp_path_factory.mktemp("spm") / "text.txt"
    text.write_text("the king and the queen speak softly to my lord\n" * 50)
    return SentencePieceTokenizer.train([text], vocab_size=60, extra_ids=10, byte_fallback=False,
                                        hard_vocab_limit=False)


def test_span_corruption_uses_the_tokenizers_sentinels_or_spare_ids(spm_with_sentinels):
    tokenizer = spm_with_sentinels
    config = load_config("t5_tiny", [f"model.vocab_size={tokenizer.vocab_size}"])
    objective = objective_for(config, tokenizer)
    assert objective.vocab_end - 1 == tokenizer.token_to_id("<extra_id_0>")
    assert (objective.eos_id, objective.pad_id) == (tokenizer.eos_id, tokenizer.pad_id)
    spare = objective_for(load_config("t5_tiny", ["model.vocab_size=100"]), wordpiece())
    assert spare.vocab_end == 100
    with pytest.raises(DataError, match="sentinel ids"):
        objective_for(load_config("t5_tiny", ["model.vocab_size=60"]), wordpiece())


def test_masked_lm_without_a_mask_token_needs_a_spare_id(spm_with_sentinels):
    tokenizer = spm_with_sentinels
    spare = objective_for(load_config("bert_tiny", [f"model.vocab_size={tokenizer.vocab_size + 1}"]),
                          tokenizer)
    assert spare.mask_id == tokenizer.vocab_size
    with pytest.raises(DataError, match=r"no \[MASK\] token"):
        objective_for(load_config("bert_tiny", [f"model.vocab_size={tokenizer.vocab_size}"]),
                      tokenizer)


def test_make_objective_asks_for_missing_special_ids():
    with pytest.raises(ConfigError, match="objective_for"):
        make_objective("masked_lm", pad_id=0, vocab_size=100)
    assert isinstance(make_objective("span_corruption", pad_id=0, seq_len=32, vocab_end=100,
                                     eos_id=1), SpanCorruption)


@pytest.mark.parametrize("name", ["bert_tiny", "t5_tiny"])
def test_sentencepiece_trained_with_the_objectives_options_serves_it(tmp_path, name):
    config = load_config(name, ["data.tokenizer=sentencepiece", "model.vocab_size=160"])
    text = tmp_path / "text.txt"
    text.write_text("the king and the queen speak softly to my lord\n" * 50)
    tokenizer = SentencePieceTokenizer.train([text], vocab_size=160, byte_fallback=False,
                                             hard_vocab_limit=False,
                                             **tokenizer_training_options(config.data))
    objective = objective_for(config, tokenizer)
    if name == "bert_tiny":
        assert objective.framed and objective.mask_id == tokenizer.token_to_id("[MASK]")
    else:
        assert objective.vocab_end == tokenizer.vocab_size and tokenizer.extra_ids == 100


def _t5_counts(length: int, noise_density: float, mean_span: float) -> tuple[int, int]:
    """T5's `random_spans_noise_mask` counts, written from its source: noise tokens are
    round(length * density) clipped to [1, length - 1], spans round(noise / mean span), >= 1."""
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    return num_noise, max(int(round(num_noise / mean_span)), 1)


def _near_half(x: float) -> bool:
    """Whether float32 and float64 arithmetic could round x differently (x close to k + 1/2)."""
    return abs(x - math.floor(x) - 0.5) < 1e-4


def test_noise_token_and_span_counts_are_t5s_rounded_not_floored():
    rng = np.random.default_rng(0)
    checked = floor_differs = 0
    for length in range(2, 400):
        for density, mean_span in [(0.15, 3.0), (0.3, 2.5), (0.5, 8.0), (0.15, 5.0)]:
            if _near_half(length * density):
                continue
            num_noise, num_spans = _t5_counts(length, density, mean_span)
            if _near_half(num_noise / mean_span):
                continue
            mask = random_spans_noise_mask(length, density, mean_span, rng)
            spans = int(mask[0]) + int(np.sum(mask[1:] & ~mask[:-1]))
            assert (int(mask.sum()), spans) == (num_noise, num_spans), (length, density, mean_span)
            checked += 1
            floor_differs += num_spans != max(num_noise // mean_span, 1)
    assert checked > 1000 and floor_differs > 200  # the lengths where flooring would go wrong are covered
