"""NGramLM against the course's worked examples and hand-computed estimates."""

import math
from fractions import Fraction as F

import pytest

from lmjax.errors import CheckpointError, ConfigError, DataError, LmjaxError
from lmjax.ngram import NGramLM


def aab_model() -> NGramLM:
    # One training sentence a^10 b^10 gives exactly p(a|<s>)=1, p(a|a)=.9, p(b|a)=.1, p(b|b)=.9, p(</s>|b)=.1.
    return NGramLM(2, "mle").fit([list("a" * 10 + "b" * 10)])


@pytest.mark.smoke
def test_worked_bigram_example():
    model = aab_model()
    assert [model.prob(w, [h]) for w, h in [("a", "<s>"), ("a", "a"), ("b", "a"), ("b", "b"), ("</s>", "b")]] == (
        pytest.approx([1.0, 0.9, 0.1, 0.9, 0.1])
    )
    assert math.exp(model.logprob(list("aab"))) == pytest.approx(0.009)
    result = model.evaluate([list("aab")])
    assert result.n_predicted == 4
    assert round(result.perplexity, 2) == 3.25
    assert round(result.entropy_bits, 2) == 1.70
    assert model.entropy([list("aab")], base=math.e) == pytest.approx(math.log(result.perplexity))


def test_mle_on_its_own_training_sentence():
    sentence = "the cat sat on the mat".split()
    # Trigram: every context is followed by one word only, so all probability is on this sentence.
    trigram = NGramLM(3, "mle").fit([sentence])
    assert trigram.perplexity([sentence]) == pytest.approx(1.0)
    assert trigram.entropy([sentence]) == pytest.approx(0.0, abs=1e-12)
    # Bigram: "the" is followed by cat and mat, so p = 1/2 * 1/2 over N = 7 predictions.
    bigram = NGramLM(2, "mle").fit([sentence])
    assert bigram.perplexity([sentence]) == pytest.approx(4 ** (1 / 7))


def test_uniform_model_has_perplexity_v():
    # Unigram MLE without an end symbol on four equally frequent symbols is uniform over V = 4.
    model = NGramLM(1, "mle", end_symbols=0).fit([list("abcd")])
    assert model.perplexity([list("dcba")]) == pytest.approx(4.0)
    assert model.entropy([list("dcba")]) == pytest.approx(2.0)
    # Add-k with a huge k flattens any model to uniform over {a, b, c, <unk>, </s>}.
    flat = NGramLM(2, "add_k", k=1e9).fit([list("abcab")])
    assert len(flat.support()) == 5
    assert flat.perplexity([list("cab")]) == pytest.approx(5.0)


def test_bos_is_context_only_and_end_symbol_is_predicted():
    model = NGramLM(3, "kneser_ney").fit([["x", "y"]])
    assert "<s>" not in model.support()
    assert "</s>" in model.support() and "<unk>" in model.support()
    with pytest.raises(LmjaxError, match="never predicted"):
        model.prob("<s>", ["x"])
    assert "</s>" not in NGramLM(2, "laplace", end_symbols=0).fit([["x"]]).support()


def test_mle_unseen_event_is_an_error_unless_zero_allowed():
    model = aab_model()
    with pytest.raises(LmjaxError, match="unseen 2-gram 'b a'"):
        model.prob("a", ["b"])
    assert model.prob("a", ["b"], allow_zero=True) == 0.0
    with pytest.raises(LmjaxError, match="allow_zero"):
        model.perplexity([list("aba")])
    assert model.perplexity([list("aba")], allow_zero=True) == math.inf


def test_unk_cutoff_maps_rare_tokens_to_unk():
    model = NGramLM(1, "mle", unk_cutoff=2).fit([["a", "a", "b", "c"], ["a", "b", "d"]])
    assert set(model.support()) == {"a", "b", "<unk>", "</s>"}
    # c and d (once each) are two <unk> events out of 9 predictions.
    assert model.prob("<unk>") == pytest.approx(2 / 9)
    assert model.prob("never-seen") == pytest.approx(2 / 9)
    assert model.evaluate([["a", "zzz"]]).n_oov == 1


def test_addk_and_laplace_by_hand():
    model = NGramLM(2, "add_k", k=0.5).fit([list("abab")])
    # V = {a, b, <unk>, </s>}; after a: b twice; after b: a once, </s> once.
    assert model.prob("b", ["a"]) == pytest.approx((2 + 0.5) / (2 + 0.5 * 4))
    assert model.prob("</s>", ["a"]) == pytest.approx(0.5 / (2 + 0.5 * 4))
    assert model.prob("a", ["zzz-unseen"]) == pytest.approx(1 / 4)
    laplace = NGramLM(2, "laplace").fit([list("abab")])
    assert laplace.prob("a", ["b"]) == pytest.approx((1 + 1) / (2 + 4))


KN_CORPUS = [["a", "b"], ["b", "a", "b"], ["c", "b"]]


def test_kneser_ney_continuation_counts_by_hand():
    bigram = NGramLM(2, "kneser_ney", discount=0.5).fit(KN_CORPUS)
    # Bigrams: <s>a <s>b <s>c, ab ab, ba, cb, b</s> x3. Distinct left neighbours of each word:
    assert [bigram.continuation_count([w]) for w in ["a", "b", "c", "</s>"]] == [2, 3, 1, 1]
    assert bigram.count(["a", "b"]) == 2 and bigram.count(["b", "</s>"]) == 3 and bigram.count(["b"]) == 4
    trigram = NGramLM(3, "kneser_ney", discount=0.5).fit(KN_CORPUS)
    # Trigrams ending in "a b": <s> a b and b a b; ending in "c b": only <s> c b.
    assert trigram.continuation_count(["a", "b"]) == 2
    assert trigram.continuation_count(["c", "b"]) == 1


def test_kneser_ney_probabilities_by_hand():
    model = NGramLM(2, "kneser_ney", discount=0.5).fit(KN_CORPUS)
    # Unigrams: continuation counts a 2, b 3, c 1, </s> 1 (sum 7); γ = 0.5*4/7 spread over |V| = 5.
    continuation = {"a": 2, "b": 3, "c": 1, "</s>": 1, "<unk>": 0}
    p1 = {w: max(c - F(1, 2), 0) / 7 + F(2, 7) / 5 for w, c in continuation.items()}
    assert p1["a"] == F(19, 70)
    assert sum(p1.values()) == 1
    # After b: b a once, b </s> three times; γ(b) = 0.5*2/4.
    after_b = {"a": 1, "</s>": 3, "b": 0, "c": 0, "<unk>": 0}
    expected = {w: max(c - F(1, 2), 0) / 4 + F(1, 4) * p1[w] for w, c in after_b.items()}
    assert expected["a"] == F(27, 140)
    for word, p in expected.items():
        assert model.prob(word, ["b"]) == pytest.approx(float(p), rel=1e-12)


def test_kneser_ney_keeps_raw_counts_for_ngrams_after_start_symbol():
    # Nothing can precede "<s> a", so KN uses its raw count 2 rather than a continuation count of 1.
    model = NGramLM(3, "kneser_ney", discount=0.5).fit([["a"], ["a"], ["b"]])
    p1_a = F(1, 2) / 4 + F(3, 8) / 4  # continuation counts a 1, b 1, </s> 2; |V| = 4
    p2_a = F(3, 2) / 3 + F(1, 3) * p1_a
    assert model.prob("a", ["<s>"]) == pytest.approx(float(p2_a), rel=1e-12)
    assert model.prob("a", ["<s>", "<s>"]) == pytest.approx(float(F(3, 2) / 3 + F(1, 3) * p2_a), rel=1e-12)


def test_absolute_discount_backoff_by_hand():
    model = NGramLM(2, "backoff", discount=0.5).fit(KN_CORPUS)
    # Unigram raw counts a 2, b 4, c 1, </s> 3 of 10; freed 0.5*4/10 spread over |V| = 5.
    p1 = {"a": 0.19, "b": 0.39, "c": 0.09, "</s>": 0.29, "<unk>": 0.04}
    for word, p in p1.items():
        assert model.prob(word) == pytest.approx(p)
    # After b: seen a (1) and </s> (3); the freed 0.25 goes to b, c, <unk> in proportion to p1.
    assert model.prob("a", ["b"]) == pytest.approx(0.125)
    assert model.prob("</s>", ["b"]) == pytest.approx(0.625)
    assert model.prob("c", ["b"]) == pytest.approx(0.25 * 0.09 / 0.52)


def test_save_load_round_trip(tmp_path):
    sentences = [s.split() for s in ["the cat sat", "the dog sat down", "a cat ran"]]
    for smoothing in ["mle", "laplace", "kneser_ney", "modified_kneser_ney", "backoff"]:
        model = NGramLM(3, smoothing, unk_cutoff=1).fit(sentences)
        model.meta = {"unit": "word"}
        model.save(tmp_path / "m.json")
        loaded = NGramLM.load(tmp_path / "m.json")
        assert loaded.config == model.config and loaded.meta == model.meta
        for context, word in [(["the", "cat"], "sat"), (["the"], "dog"), (["<s>", "<s>"], "a")]:
            assert loaded.prob(word, context) == model.prob(word, context)


def test_save_load_keeps_int_tokens(tmp_path):
    model = NGramLM(2, "laplace").fit([[5, 7, 5], [7, 7]])
    model.save(tmp_path / "ids.json")
    loaded = NGramLM.load(tmp_path / "ids.json")
    assert loaded.support() == model.support()
    assert loaded.prob(7, [5]) == model.prob(7, [5]) == pytest.approx((1 + 1) / (2 + 4))


def test_saving_unsupported_tokens_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="cannot save a model over bytes tokens"):
        NGramLM(1, "laplace").fit([[b"x", b"y"]]).save(tmp_path / "m.json")


def test_generate_follows_the_model():
    model = NGramLM(2, "mle").fit([["a", "b", "c"]])
    assert model.generate(seed=0) == ["a", "b", "c"]
    smooth = NGramLM(2, "kneser_ney").fit([s.split() for s in ["x y z", "y z x", "z z"]])
    assert smooth.generate(seed=3) == smooth.generate(seed=3)
    assert set(smooth.generate(seed=1, max_len=50)) <= set(smooth.support())
    assert len(smooth.generate(seed=1, max_len=5)) <= 5


def test_distribution_matches_prob():
    model = NGramLM(3, "modified_kneser_ney").fit([s.split() for s in ["x y z", "y z x", "z z", "x x y"]])
    p = model.distribution(["y", "z"])
    assert p.sum() == pytest.approx(1.0)
    for word in model.support():
        assert p[model.vocab.index[word]] == pytest.approx(model.prob(word, ["y", "z"]))


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda: NGramLM(0), ConfigError),
        (lambda: NGramLM(-2, "mle"), ConfigError),
        (lambda: NGramLM(3, "kneser_ney", discount=0.0), ConfigError),
        (lambda: NGramLM(3, "kneser_ney", discount=1.0), ConfigError),
        (lambda: NGramLM(3, "backoff", discount=-0.3), ConfigError),
        (lambda: NGramLM(3, "add_k", k=0), ConfigError),
        (lambda: NGramLM(3, "witten_bell"), ConfigError),
        (lambda: NGramLM(3).fit([]), DataError),
        (lambda: NGramLM(3).fit([[], []]), DataError),
        (lambda: NGramLM(2).fit([["a", "</s>", "b"]]), DataError),
        (lambda: NGramLM(2).perplexity([["a"]]), LmjaxError),
    ],
)
def test_bad_input_is_a_one_line_error(make, error):
    with pytest.raises(error) as err:
        make()
    assert "\n" not in str(err.value)


def test_incompatible_saved_model_is_a_one_line_error(tmp_path):
    path = tmp_path / "m.json"
    NGramLM(2, "laplace").fit([["a", "b"]]).save(path)
    path.write_text(path.read_text().replace('"version":1', '"version":99'))
    with pytest.raises(CheckpointError, match="format version 99.*reads version 1") as err:
        NGramLM.load(path)
    assert "\n" not in str(err.value)
    path.write_text('{"hello": 1}')
    with pytest.raises(CheckpointError, match="not an lmjax n-gram model"):
        NGramLM.load(path)
