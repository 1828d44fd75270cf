"""WordPiece: the worked examples, the incremental trainer against a full recount, greedy
longest match and BERT pre-tokenization against HF tokenizers, accents on Spanish text."""

from collections import Counter

import pytest

from lmjax.errors import DataError
from lmjax.tokenizers import BPETokenizer, WordPieceTokenizer, load
from lmjax.tokenizers.bert_pretokenizer import BertPreTokenizer
from lmjax.tokenizers.wordpiece_trainer import base_alphabet, join_tokens, learn_vocabulary, split_word


def test_worked_example_training_aaabb():
    vocab = base_alphabet(["aaabb"])
    assert vocab == ["a", "b", "##a", "##b"]
    learn_vocabulary({"aaabb": 1}, vocab, vocab_size=5, progress=False)
    assert vocab[4] == "aa" == join_tokens("a", "##a")
    tok = WordPieceTokenizer(vocab, special_tokens=())
    assert [vocab[i] for i in tok.tokenize_word("aaabb")] == ["aa", "##a", "##b", "##b"]


def test_worked_example_tokenizing_aaa_takes_longest_prefix():
    vocab = ["a", "b", "##a", "##b", "aa"]
    tok = WordPieceTokenizer(vocab, special_tokens=())
    assert [vocab[i] for i in tok.tokenize_word("aaa")] == ["aa", "##a"]


def test_uncoverable_word_becomes_unk():
    tok = WordPieceTokenizer(["[UNK]", "a", "##b"], special_tokens=("[UNK]",))
    assert tok.encode("ab ba abab") == [1, 2, 0, 0]  # "ba" has no bare "b", "abab" no "##a": whole words


def naive_vocabulary(word_counts, vocab, vocab_size):
    """Textbook WordPiece: recount everything and rescore every pair before each merge."""
    ids = {token: i for i, token in enumerate(vocab)}
    words = {tuple(ids[p] for p in split_word(word)): count for word, count in word_counts.items()}
    while len(vocab) < vocab_size:
        pairs, singles = Counter(), Counter()
        for word, count in words.items():
            for token in word:
                singles[token] += count
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        best = min(pairs, key=lambda p: (-pairs[p] / (singles[p[0]] * singles[p[1]]), p))
        token = join_tokens(vocab[best[0]], vocab[best[1]])
        if token not in ids:
            ids[token] = len(vocab)
            vocab.append(token)
        merged = {}
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i : i + 2] == best:
                    out.append(ids[token])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + count
        words = merged
    return vocab


def test_incremental_trainer_matches_full_recount(data_dir):
    text = (data_dir / "multilingual" / "es_gsd_devtest.txt").read_text(encoding="utf-8")[:25_000]
    word_counts = Counter(BertPreTokenizer()(text))
    fast = base_alphabet(word_counts)
    slow = list(fast)
    learn_vocabulary(word_counts, fast, len(fast) + 250, progress=False)
    assert fast == naive_vocabulary(word_counts, slow, len(slow) + 250)


@pytest.fixture(scope="module")
def spanish(data_dir):
    return data_dir / "multilingual" / "es_gsd_devtest.txt"


@pytest.fixture(scope="module")
def spanish_wordpiece(spanish):
    return WordPieceTokenizer.train([spanish], vocab_size=2000, progress=False)


def test_spanish_vocabulary_keeps_accents(spanish_wordpiece, spanish):
    tok = spanish_wordpiece
    assert tok.vocab_size == 2000
    assert tok.vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id, tok.eos_id) == (0, 1, 2, 3, 4, 3)
    assert {"á", "é", "í", "ó", "ú", "ñ", "##ñ", "##ó"} <= set(tok.vocab)
    text = spanish.read_text(encoding="utf-8")
    ids = tok.encode(text)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == " ".join(BertPreTokenizer()(text))
    assert len(ids) < len(text) / 1.2


def test_lowercase_strips_accents_like_uncased_bert(spanish):
    tok = WordPieceTokenizer.train([spanish], vocab_size=600, lowercase=True, progress=False)
    assert not any(char in token for token in tok.vocab for char in "ÁáÉéñÑ")
    assert tok.decode(tok.encode("El Niño está aquí.")) == "el nino esta aqui ."


def test_matches_hf_wordpiece_on_the_same_vocabulary(spanish_wordpiece, spanish):
    hf = pytest.importorskip("tokenizers")
    vocab = {token: i for i, token in enumerate(spanish_wordpiece.vocab)}
    reference = hf.Tokenizer(hf.models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    reference.normalizer = hf.normalizers.BertNormalizer(handle_chinese_chars=False, lowercase=False)
    reference.pre_tokenizer = hf.pre_tokenizers.BertPreTokenizer()
    text = spanish.read_text(encoding="utf-8") + "\n Ωmega 😀 x\x00y\u200bz"
    assert spanish_wordpiece.encode(text) == reference.encode(text, add_special_tokens=False).ids


def test_specials_are_recognised_only_when_allowed(spanish_wordpiece):
    ids = spanish_wordpiece.encode("[CLS] hola [SEP]", allowed_special="all")
    assert ids[0] == 2 and ids[-1] == 3
    assert 2 not in spanish_wordpiece.encode("[CLS] hola")


def test_training_is_deterministic_and_save_load(spanish_wordpiece, spanish, tmp_path):
    again = WordPieceTokenizer.train([spanish], vocab_size=2000, progress=False)
    assert again.vocab == spanish_wordpiece.vocab
    spanish_wordpiece.save(tmp_path)
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:2] == ["[PAD]", "[UNK]"]
    rebuilt = load(tmp_path)
    assert isinstance(rebuilt, WordPieceTokenizer) and rebuilt.vocab == spanish_wordpiece.vocab
    with pytest.raises(DataError, match="holds a 'wordpiece' tokenizer, not 'bpe'"):
        BPETokenizer.load(tmp_path)


def test_bad_input_is_one_line(tmp_path, spanish):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("hola\nel niño".encode("latin-1"))
    cases = [
        (lambda: WordPieceTokenizer.train([empty], vocab_size=100), "empty"),
        (lambda: WordPieceTokenizer.train([], vocab_size=100), "no training files"),
        (lambda: WordPieceTokenizer.train([latin1], vocab_size=100), r"not UTF-8: byte 10 \(line 2\)"),
        (lambda: WordPieceTokenizer.train([spanish], vocab_size=50), "smaller than the"),
        (lambda: WordPieceTokenizer.train([tmp_path / "nope.txt"], vocab_size=50), "does not exist"),
        (lambda: WordPieceTokenizer(["a", "##b", "a"]), "twice"),
        (lambda: WordPieceTokenizer(["a", "##b"]), "not in the vocabulary"),
    ]
    for call, message in cases:
        with pytest.raises(DataError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
