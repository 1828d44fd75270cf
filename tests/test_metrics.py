"""lmjax.metrics against the course's worked examples and analytic values."""

import math

import numpy as np
import pytest

from lmjax import metrics
from lmjax.errors import LmjaxError


def test_aab_worked_example():
    # p(a|<s>)=1, p(a|a)=0.9, p(b|a)=0.1, p(</s>|b)=0.1: p(aab</s>) = 0.009 over N=4 predictions.
    total = -sum(math.log(p) for p in (1.0, 0.9, 0.1, 0.1))
    assert math.exp(-total) == pytest.approx(0.009)
    assert metrics.perplexity(total, 4) == pytest.approx(0.009 ** -0.25)
    assert round(metrics.perplexity(total, 4), 2) == 3.25
    assert round(metrics.entropy(total, 4), 2) == 1.70
    assert metrics.entropy(total, 4, base=math.e) == pytest.approx(math.log(metrics.perplexity(total, 4)))


def test_certain_model_has_perplexity_one_and_zero_entropy():
    assert metrics.perplexity(0.0, 7) == 1.0
    assert metrics.entropy(0.0, 7) == 0.0


@pytest.mark.parametrize("v", [2, 26, 50257])
def test_uniform_model(v):
    n = 1000
    total = n * math.log(v)
    assert metrics.perplexity(total, n) == pytest.approx(v)
    assert metrics.entropy(total, n) == pytest.approx(math.log2(v))
    assert metrics.perplexity_from_mean_loss(math.log(v)) == pytest.approx(v)
    assert metrics.bits_from_mean_loss(math.log(v)) == pytest.approx(math.log2(v))


def test_bits_per_byte_and_character():
    # 8 bits per symbol spread over 2 bytes or 4 characters per symbol.
    total = 100 * 8 * math.log(2)
    assert metrics.bits_per_byte(total, 200) == pytest.approx(4.0)
    assert metrics.bits_per_character(total, 400) == pytest.approx(2.0)


def test_word_level_perplexity_uses_word_count():
    # 30 tokens at mean loss ln(4) over a text of 20 words: ppl_word = 4^(30/20) = 8.
    total = 30 * math.log(4)
    assert metrics.perplexity(total, 30) == pytest.approx(4.0)
    assert metrics.word_level_perplexity(total, 20) == pytest.approx(8.0)


def test_accepts_numpy_and_jax_scalars():
    jnp = pytest.importorskip("jax.numpy")
    for total, n in ((np.float32(4 * math.log(3)), np.int64(4)), (jnp.float32(4 * math.log(3)), jnp.int32(4))):
        assert isinstance(metrics.perplexity(total, n), float)
        assert metrics.perplexity(total, n) == pytest.approx(3.0, rel=1e-6)
        assert metrics.bits_per_byte(total, n) == pytest.approx(math.log2(3), rel=1e-6)


def test_infinite_loss_gives_infinite_perplexity():
    assert metrics.perplexity(math.inf, 3) == math.inf
    assert metrics.perplexity(1e6, 1) == math.inf


@pytest.mark.parametrize(
    "call",
    [
        lambda: metrics.perplexity(1.0, 0),
        lambda: metrics.entropy(1.0, 0),
        lambda: metrics.bits_per_byte(1.0, 0),
        lambda: metrics.bits_per_character(1.0, -1),
        lambda: metrics.word_level_perplexity(1.0, 0),
        lambda: metrics.entropy(1.0, 2, base=1),
    ],
)
def test_empty_counts_are_one_line_errors(call):
    with pytest.raises(LmjaxError) as err:
        call()
    assert "\n" not in str(err.value)


def test_bits_are_converted_from_nats_only_in_metrics_py():
    """Issue 24: bits per byte was computed in four places. Every module that reports bits per
    byte or per character must call lmjax.metrics, so none of them divides by ln 2 itself."""
    import pathlib
    import re

    root = pathlib.Path(metrics.__file__).parent
    divides_by_ln2 = re.compile(r"math\.log\(2(\.0)?\)|np\.log\(2(\.0)?\)")
    offenders = [str(path.relative_to(root)) for path in sorted(root.rglob("*.py"))
                 if path.name != "metrics.py" and divides_by_ln2.search(path.read_text(encoding="utf-8"))]
    assert offenders == []
