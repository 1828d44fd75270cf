"""Fertility counts against GPT-2's published encodings (tiktoken's, in the shared data)."""

import json

import pytest

from lmjax.data.fertility import gpt2_tokenizer, measure


@pytest.fixture(scope="module")
def gpt2(data_dir):
    return gpt2_tokenizer(data_dir)


def test_hello_world_by_hand(gpt2):
    counts = measure(["hello world"], gpt2)  # [31373, 995]: 11 bytes, 2 words, 2 tokens
    assert (counts.bytes, counts.words, counts.tokens) == (11, 2, 2)
    assert counts.bytes_per_token == 5.5 and counts.words_per_token == 1.0


def test_token_counts_equal_tiktoken_reference(gpt2, data_dir):
    lines = (data_dir / "gpt2_bpe" / "tokenization_vectors.jsonl").read_text().split("\n")
    records = [json.loads(line) for line in lines if line][:-1]  # the last one uses the special token
    counts = measure([r["text"] for r in records], gpt2)
    assert counts.tokens == sum(len(r["ids"]) for r in records)
    assert counts.bytes == sum(len(r["text"].encode("utf-8")) for r in records)
