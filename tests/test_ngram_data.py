"""N-gram models and letter entropies on the real corpora in the shared data dir."""

import math

import numpy as np
import pytest

from lmjax.ngram import NGramLM
from lmjax.ngram.shannon import SHANNON_1951, block_entropy, letter_entropies, reduce_to_letters
from lmjax.ngram.units import TextUnit

TEXT8 = "text8/text8_derived_first_3010294_chars.txt"


@pytest.fixture(scope="module")
def text8(data_dir) -> str:
    return (data_dir / TEXT8).read_text()


@pytest.fixture(scope="module")
def ptb(data_dir) -> list[list[str]]:
    return TextUnit("word").read(data_dir / "ptb" / "ptb.valid.txt")


def test_shannon_f1_f2_on_text8_match_shannon_1951(text8):
    f = letter_entropies(reduce_to_letters(text8), max_order=3, alphabet=26)
    shannon = SHANNON_1951[26]
    assert f[0] == pytest.approx(math.log2(26)) and round(f[0], 2) == shannon[0]
    assert abs(f[1] - shannon[1]) < 0.15
    assert abs(f[2] - shannon[2]) < 0.15
    assert f[1] > f[2] > f[3]


def test_letter_entropies_of_known_sources():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 26, 200_000)
    f = letter_entropies(uniform, 2, 26)
    assert f[1] == pytest.approx(math.log2(26), abs=0.01)
    assert f[2] == pytest.approx(math.log2(26), abs=0.01)
    periodic = np.tile(np.arange(5), 1000)  # each letter fixes the next: F2 = 0 (up to the text's ends)
    assert letter_entropies(periodic, 2, 26)[1:] == pytest.approx([math.log2(5), 0.0], abs=1e-5)
    assert block_entropy(periodic, 0, 26) == 0.0


def test_reduce_to_letters():
    assert reduce_to_letters("Ab, c!").tolist() == [0, 1, 2]
    assert reduce_to_letters("Ab, c!", keep_space=True).tolist() == [0, 1, 26, 2, 26]


def test_ptb_perplexity_falls_from_unigram_to_trigram(ptb):
    # The README's count: 73,760 tokens with one <eos> (our </s>) per line.
    assert NGramLM(1, "laplace").fit(ptb).evaluate(ptb).n_predicted == 73_760
    train, test = ptb[:3000], ptb[3000:]
    ppl = {n: NGramLM(n, "kneser_ney").fit(train).perplexity(test) for n in range(1, 6)}
    assert ppl[1] > ppl[2] > ppl[3]
    assert 300 < ppl[1] < 700 and 100 < ppl[3] < 250
    # 60k words of training data support little beyond trigrams; orders 4 and 5 stay close.
    assert abs(ppl[4] - ppl[3]) < 0.05 * ppl[3] and abs(ppl[5] - ppl[3]) < 0.05 * ppl[3]


def test_text8_trigram_counts_everything(text8):
    words = text8.split()
    sentences = [words[i : i + 100] for i in range(0, len(words), 100)]
    model = NGramLM(3, "kneser_ney").fit(sentences)
    table = model.table
    n_events = len(words) + len(sentences)
    assert [int(c.sum()) for c in table.counts[1:]] == [n_events] * 3
    assert model.count(["the"]) == words.count("the")
    pairs = sum(a == "one" and b == "nine" for s in sentences for a, b in zip(s, s[1:]))
    assert model.count(["one", "nine"]) == pairs > 1000
    assert model.perplexity(sentences[-50:]) < model.perplexity([s[::-1] for s in sentences[-50:]])
