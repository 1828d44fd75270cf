"""SentencePiece: training that keeps every character, .model loading, sentinels, save/load."""

import pytest

from lmjax.errors import DataError
from lmjax.tokenizers import SentencePieceTokenizer, load, train_tokenizer


@pytest.fixture(scope="module")
def shakespeare(data_dir):
    return data_dir / "tinyshakespeare" / "input.txt"


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def trained(request, shakespeare):
    return SentencePieceTokenizer.train([shakespeare], vocab_size=1000, model_type=request.param, extra_ids=8)


def test_round_trips_the_whole_corpus_newlines_included(trained, shakespeare):
    text = shakespeare.read_text(encoding="utf-8")
    ids = trained.encode(text)
    assert trained.decode(ids) == text
    assert len(ids) < len(text) / 2  # the vocabulary really compresses
    assert trained.encode("\n") == [trained.processor.piece_to_id("\n")]


def test_unseen_characters_round_trip_through_byte_fallback(trained):
    text = "  Ångström  —  日本語 🙂\t\r\n end "
    assert trained.decode(trained.encode(text)) == text


def test_vocab_size_and_special_ids(trained):
    assert trained.vocab_size == 1000
    assert (trained.unk_id, trained.bos_id, trained.eos_id, trained.pad_id) == (0, 1, 2, 3)
    assert max(max(trained.encode("To be, or not to be")), 0) < 1000 - 8


def test_t5_sentinels_count_down_from_the_end(trained):
    assert trained.sentinel_ids(3) == [999, 998, 997]
    assert trained.piece(999) == "<extra_id_0>"
    text = "a<extra_id_1> b</s>"
    ids = trained.encode(text, allowed_special="all")
    assert ids[-1] == trained.eos_id and 998 in ids
    assert trained.decode(ids) == text
    assert 998 not in trained.encode(text)  # specials stay text unless allowed
    with pytest.raises(DataError, match="sentinels"):
        trained.sentinel_ids(9)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_training_is_deterministic(model_type, shakespeare, tmp_path):
    excerpt = tmp_path / "excerpt.txt"
    excerpt.write_text(shakespeare.read_text(encoding="utf-8")[:200_000], encoding="utf-8")
    first, second = (SentencePieceTokenizer.train([excerpt], vocab_size=500, model_type=model_type) for _ in range(2))
    assert first.model_proto == second.model_proto


def test_save_and_load_rebuild_the_same_tokenizer(trained, tmp_path):
    trained.save(tmp_path)
    rebuilt = load(tmp_path)
    assert isinstance(rebuilt, SentencePieceTokenizer)
    assert rebuilt.extra_ids == 8 and rebuilt.vocab_size == 1000
    text = "Now is the winter of our discontent\n"
    assert rebuilt.encode(text) == trained.encode(text)


def test_loads_llama2c_stories_model(data_dir):
    tok = SentencePieceTokenizer.from_file(data_dir / "stories260K" / "tok512.model")
    assert tok.vocab_size == 512 and tok.bos_id == 1 and tok.eos_id == 2
    text = "Once upon a time, there was a little girl named Lily."
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode_batch(tok.encode_batch([text, "She"])) == [text, "She"]


def test_train_tokenizer_dispatches_on_kind(shakespeare):
    tok = train_tokenizer("sentencepiece", [shakespeare], vocab_size=400, model_type="bpe")
    assert isinstance(tok, SentencePieceTokenizer) and tok.vocab_size == 400
    with pytest.raises(DataError, match="unknown tokenizer kind"):
        train_tokenizer("morfessor", [shakespeare], vocab_size=400)


def test_bad_input_is_one_line(tmp_path, shakespeare):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("hello world\nfoo bar\n")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("año\nniño".encode("latin-1"))
    cases = [
        (lambda: SentencePieceTokenizer.train([empty], vocab_size=400), "empty"),
        (lambda: SentencePieceTokenizer.train([latin1], vocab_size=400), r"not UTF-8: byte 1 \(line 1\)"),
        (lambda: SentencePieceTokenizer.train([shakespeare], vocab_size=200), "too small"),
        (lambda: SentencePieceTokenizer.train([shakespeare], vocab_size=400, model_type="wordpiece"), "model_type"),
        (lambda: SentencePieceTokenizer.from_file(empty), "not a SentencePiece model"),
        (lambda: SentencePieceTokenizer.train([tiny], vocab_size=400), "Vocabulary size too high"),
    ]
    for call, message in cases:
        with pytest.raises(DataError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
