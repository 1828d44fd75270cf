"""Byte-level BPE: the worked examples, GPT-2's published vectors, exact round trips,
and the incremental trainer against a from-scratch reference and HF tokenizers."""

import json
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lmjax.errors import DataError
from lmjax.tokenizers import BPETokenizer, load
from lmjax.tokenizers.bpe import GPT2_PATTERN, count_pretokens
from lmjax.tokenizers.bpe_trainer import learn_merges, merge_pair


def symbols(text, vocab):
    return tuple(vocab.index(char) for char in text)


def spell(ids, vocab):
    return " ".join(vocab[i] for i in ids)


def test_worked_example_training_aaabdaaabac():
    vocab = ["a", "b", "c", "d"]
    corpus = symbols("aaabdaaabac", vocab)
    merges = learn_merges({corpus: 1}, vocab, vocab_size=5, progress=False)
    assert vocab == ["a", "b", "c", "d", "aa"]
    assert merges == [(0, 0, 4)]
    assert spell(merge_pair(corpus, (0, 0), 4), vocab) == "aa a b d aa a b a c"


def test_worked_example_tokenizing_aabaa_replays_merges(tmp_path):
    vocab = ["a", "b", "c", "d", "aa"]
    assert spell(merge_pair(symbols("aabaa", vocab), (0, 0), 4), vocab) == "aa b aa"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("aaabdaaabac")
    tok = BPETokenizer.train([corpus], vocab_size=257, special_tokens=(), progress=False)
    assert [tok.token_bytes[i] for i in tok.encode("aabaa")] == [b"aa", b"b", b"aa"]


@pytest.fixture(scope="module")
def gpt2(data_dir):
    folder = data_dir / "gpt2_bpe"
    return BPETokenizer.from_gpt2_files(folder / "encoder.json", folder / "vocab.bpe")


@pytest.mark.smoke
def test_gpt2_published_vectors(gpt2, data_dir):
    records = [json.loads(line) for line in (data_dir / "gpt2_bpe" / "tokenization_vectors.jsonl").open()]
    assert len(records) == 215
    for record in records:
        allowed = "all" if "special token" in record["source"] else ()
        assert gpt2.encode(record["text"], allowed_special=allowed) == record["ids"], record["text"]
        assert gpt2.decode(record["ids"]) == record["text"]
    assert gpt2.vocab_size == 50257 and gpt2.eos_id == 50256 and gpt2.special_tokens == {"<|endoftext|>": 50256}


def test_gpt2_matches_tiktoken_on_shakespeare(gpt2, data_dir):
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(data_dir / "gpt2_bpe" / "gpt2.tiktoken"))
    reference = tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:300_000]
    assert gpt2.encode(text) == reference.encode_ordinary(text)


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(exclude_categories=())))
def test_round_trip_arbitrary_unicode_with_lone_surrogates(gpt2, text):
    assert gpt2.decode(gpt2.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.binary())
def test_round_trip_arbitrary_bytes(gpt2, data):
    assert gpt2.decode_bytes(gpt2.encode_bytes(data)) == data


def naive_merges(word_counts, vocab, vocab_size):
    """Textbook BPE: recount every pair over the whole corpus before each merge."""
    words = {tuple(word): count for word, count in word_counts.items()}
    merges = []
    while len(vocab) < vocab_size:
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        symbol = vocab[best[0]] + vocab[best[1]]
        if symbol not in vocab:
            vocab.append(symbol)
        merges.append((*best, vocab.index(symbol)))
        words = {tuple(merge_pair(word, best, vocab.index(symbol))): count for word, count in words.items()}
    return merges


def test_incremental_trainer_matches_full_recount(data_dir):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()[:40_000]
    word_counts = count_pretokens([text], regex.compile(GPT2_PATTERN))
    fast_vocab = [bytes([b]) for b in range(256)]
    slow_vocab = list(fast_vocab)
    assert learn_merges(word_counts, fast_vocab, 420, progress=False) == naive_merges(word_counts, slow_vocab, 420)
    assert fast_vocab == slow_vocab


@pytest.fixture(scope="module")
def shakespeare_bpe(data_dir):
    return BPETokenizer.train([data_dir / "tinyshakespeare" / "input.txt"], vocab_size=1000, progress=False)


def test_trained_vocab_has_requested_size_and_round_trips(shakespeare_bpe, data_dir):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    assert shakespeare_bpe.vocab_size == 1000 and shakespeare_bpe.eos_id == 999
    assert len({bytes(t) for t in shakespeare_bpe.token_bytes}) == 1000
    ids = shakespeare_bpe.encode(text)
    assert shakespeare_bpe.decode(ids) == text
    assert len(ids) < len(text) / 2.2
    doc = "First Citizen:<|endoftext|>"
    assert shakespeare_bpe.encode(doc, allowed_special="all")[-1] == 999
    assert 999 not in shakespeare_bpe.encode(doc)


def test_compression_close_to_hf_tokenizers(shakespeare_bpe, data_dir):
    hf = pytest.importorskip("tokenizers")
    path = data_dir / "tinyshakespeare" / "input.txt"
    model = hf.Tokenizer(hf.models.BPE())
    model.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = hf.trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
    )
    model.train([str(path)], trainer)
    text = path.read_text(encoding="utf-8")
    ours, theirs = len(shakespeare_bpe.encode(text)), len(model.encode(text).ids)
    assert abs(ours - theirs) / theirs < 0.02


def test_training_is_deterministic(shakespeare_bpe, data_dir):
    again = BPETokenizer.train([data_dir / "tinyshakespeare" / "input.txt"], vocab_size=1000, progress=False)
    assert again.merges == shakespeare_bpe.merges


def test_save_load_writes_gpt2_files(shakespeare_bpe, tmp_path):
    shakespeare_bpe.save(tmp_path)
    assert (tmp_path / "vocab.bpe").read_text().startswith("#version: 0.2\n")
    rebuilt = load(tmp_path)
    text = "Wherefore art thou, Romeo?\n<|endoftext|>"
    assert rebuilt.encode(text, allowed_special="all") == shakespeare_bpe.encode(text, allowed_special="all")
    assert rebuilt.vocab_size == 1000 and rebuilt.eos_id == shakespeare_bpe.eos_id


def test_non_utf8_training_file_is_read_as_bytes(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("el niño y la niña, año tras año\n".encode("latin-1") * 20)
    tok = BPETokenizer.train([latin1], vocab_size=265, progress=False)
    data = latin1.read_bytes()
    assert tok.decode_bytes(tok.encode_bytes(data)) == data
    assert len(tok.encode_bytes(data)) < len(data) * 0.7


def test_bad_input_is_one_line(tmp_path, data_dir):
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("ab")
    folder = data_dir / "gpt2_bpe"
    extra_merge = tmp_path / "vocab.bpe"
    extra_merge.write_text((folder / "vocab.bpe").read_text(encoding="utf-8") + "Ġzz qx\n", encoding="utf-8")
    cases = [
        (lambda: BPETokenizer.train([empty], vocab_size=300), "empty"),
        (lambda: BPETokenizer.train([tiny], vocab_size=256), "smaller than the 256 byte tokens plus 1"),
        (lambda: BPETokenizer.train([tiny], vocab_size=300), "at most 258"),
        (lambda: BPETokenizer.from_gpt2_files(folder / "encoder.json", extra_merge), "do not belong together"),
        (lambda: BPETokenizer.from_gpt2_files(folder / "encoder.json", folder / "nope.bpe"), "does not exist"),
        (lambda: load(tmp_path / "missing"), "does not exist"),
        (lambda: load(tmp_path), "not an lmjax tokenizer directory"),
    ]
    for call, message in cases:
        with pytest.raises(DataError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
