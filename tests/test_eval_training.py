"""`train.eval_tasks` during training, on a source whose answer is known: text sampled from an
order-2 Markov chain. A tiny GPT trained on it with `lmjax.train.train`, scored by the harness
(a text8-style bits-per-character task over held-out text from the same chain) at its
evaluation steps, comes within 5% of the chain's entropy rate; the numbers land in
metrics.jsonl."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("lm_eval")

from lmjax.config import load_config  # noqa: E402
from lmjax.eval.callback import callbacks_for  # noqa: E402
from lmjax.train import train  # noqa: E402
from lmjax.train.reporting import read_metrics  # noqa: E402

ALPHABET = "abc "


def markov_chain(seed=0):
    """P(next | two previous) over ALPHABET: peaked rows, so the entropy rate is well below 2 bits."""
    rng = np.random.default_rng(seed)
    k = len(ALPHABET)
    return rng.dirichlet(np.full(k, 0.3), size=(k, k))


def entropy_rate(P):
    """Bits per character of the stationary order-2 chain: sum pi(a,b) H(P(.|a,b))."""
    k = P.shape[0]
    pi = np.full((k, k), 1.0 / k**2)
    for _ in range(2000):
        pi = np.einsum("ab,abc->bc", pi, P)
    rows = -(P * np.log2(np.where(P > 0, P, 1))).sum(-1)
    return float((pi * rows).sum())


def sample(P, n, seed):
    rng = np.random.default_rng(seed)
    state, out = [0, 1], []
    for _ in range(n):
        c = rng.choice(len(ALPHABET), p=P[state[0], state[1]])
        out.append(ALPHABET[c])
        state = [state[1], c]
    return "".join(out)


def test_a_tiny_gpt_reaches_the_entropy_rate_of_an_order_2_markov_source(tmp_path):
    P = markov_chain()
    rate = entropy_rate(P)
    corpus = tmp_path / "markov.txt"
    corpus.write_text("\n\n".join(sample(P, 4000, seed) for seed in range(1, 31)) + "\n")
    data_dir = tmp_path / "data"
    (data_dir / "text8").mkdir(parents=True)
    (data_dir / "text8" / "text8_derived_first_3010294_chars.txt").write_text(sample(P, 6000, 99))
    config = load_config("gpt_tiny", [
        f"run_dir={tmp_path / 'run'}", f"data.corpus={corpus}", f"data.data_dir={data_dir}",
        "data.tokenizer=bpe", "model.vocab_size=272", "train.steps=300", "train.lr=3e-3",
        "train.global_batch_size=16", "train.log_every=50", "train.eval_every=150",
        "train.peak_flops=1e12", "checkpoint.every=1000", "train.eval_tasks=[text8]"])
    result = train(config, callbacks_for(config))
    assert result.steps == 300
    records = [r for r in read_metrics(tmp_path / "run") if "harness/text8/bits_per_character" in r]
    assert [r["step"] for r in records] == [150, 300]
    measured = records[-1]["harness/text8/bits_per_character"]
    assert abs(measured - rate) / rate < 0.05, (measured, rate)
    assert records[-1]["harness/text8/bits_per_character"] < records[0]["harness/text8/bits_per_character"] + 0.05
    json.dumps(records)
    assert math.isfinite(records[-1]["eval_bits_per_byte"])
