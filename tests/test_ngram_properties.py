"""Every estimator's conditional distributions sum to one, for seen and unseen contexts."""

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmjax.errors import LmjaxError
from lmjax.ngram import SMOOTHINGS, NGramLM

tokens = st.sampled_from(["a", "b", "c", "d"]) | st.integers(0, 3)
corpora = st.lists(st.lists(tokens, max_size=6), min_size=1, max_size=6).filter(lambda c: any(c))
settings_ = settings(max_examples=40, deadline=None)


def seen_histories(model: NGramLM, corpus: list[list]) -> set[tuple]:
    """Histories of every prediction in the padded training text, computed without the model."""
    counts = Counter(t for s in corpus for t in s)
    seen = set()
    for sentence in corpus:
        ids = [t if counts[t] >= model.unk_cutoff else "<unk>" for t in sentence]
        padded = ["<s>"] * (model.order - 1) + ids + ["</s>"] * model.end_symbols
        for t in range(model.order - 1, len(padded)):
            seen.update(tuple(padded[t - j : t]) for j in range(model.order))
    return seen


def build(data, smoothing: str) -> tuple[NGramLM, list[list]]:
    corpus = data.draw(corpora)
    options = {
        "unk_cutoff": data.draw(st.integers(1, 2)),
        "end_symbols": data.draw(st.integers(0, 2)),
        "bos_in_vocab": data.draw(st.booleans()),
    }
    if smoothing == "add_k":
        options["k"] = data.draw(st.floats(0.01, 3.0))
    if smoothing in ("kneser_ney", "backoff"):
        options["discount"] = data.draw(st.none() | st.floats(0.05, 0.95))
    model = NGramLM(data.draw(st.integers(1, 4)), smoothing, **options)
    return model.fit(corpus), corpus


def draw_context(data, model: NGramLM, corpus: list[list]) -> list:
    if data.draw(st.booleans()):
        return list(data.draw(st.sampled_from(sorted(seen_histories(model, corpus), key=repr))))
    return data.draw(st.lists(st.sampled_from(["<s>", "a", "b", 1, "zzz", "</s>"]), max_size=model.order - 1))


@pytest.mark.parametrize("smoothing", [s for s in SMOOTHINGS if s != "mle"])
@settings_
@given(data=st.data())
def test_smoothed_distributions_sum_to_one(smoothing, data):
    model, corpus = build(data, smoothing)
    context = draw_context(data, model, corpus)
    total = sum(model.prob(w, context) for w in model.support())
    assert total == pytest.approx(1.0, abs=1e-9)


@settings_
@given(data=st.data())
def test_mle_sums_to_one_on_seen_contexts_and_refuses_unseen_ones(data):
    model, corpus = build(data, "mle")
    context = draw_context(data, model, corpus)
    mapped = tuple("<unk>" if model.vocab.index.get(t) is None and t != "<s>" else t for t in context)
    mapped = mapped[max(0, len(mapped) - (model.order - 1)) :]
    if mapped in seen_histories(model, corpus):
        assert sum(model.prob(w, context, allow_zero=True) for w in model.support()) == pytest.approx(1.0)
    else:
        with pytest.raises(LmjaxError, match="MLE gives probability 0"):
            model.prob(model.support()[0], context)
