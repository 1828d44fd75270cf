"""Hugging Face tokenizer.json files read by lmjax (through `tokenizers`) give the ids and text
transformers' fast tokenizer gives on the same files, with tokenizer_config.json's special
tokens, added tokens and BOS/EOS framing: GPT-2 (against the 215 tiktoken vectors too), a
Llama-style byte-fallback BPE and a BERT-style WordPiece, both trained here."""

import json

import pytest

from lmjax.errors import DataError
from lmjax.tokenizers import HFTokenizer, load

hf = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 3.14 o'clock, isn't it?",
    "Once upon a time there was a little girl named Lily who loved the sunny park.",
    "Ünïcödé café naïve résumé — München, Zürich; 東京 and 北京 are cities.",
    "Numbers 12345 and 67890, symbols #@!$%^&*() and code: def f(x): return x * 2",
] * 20
TEXTS = [
    "Hello world",
    "",
    "x",
    "  leading,   runs   of spaces\t\ttabs\n\n\nnewlines  ",
    "Ünïcödé naïve café — 東京 🚀 emoji ☃ never seen: ꙮ",
    "<s>inside</s> specials, <|im_end|> extra and <tool> added",
    "don't stop. It's 3.14! Isn't it ?",
]
BYTES = [f"<0x{byte:02X}>" for byte in range(256)]


def _transformers(directory):
    return transformers.PreTrainedTokenizerFast.from_pretrained(str(directory))


def _assert_same_as_transformers(ours, directory, texts):
    """Every way to encode, and decoding, against transformers on the same files."""
    theirs = _transformers(directory)
    split = transformers.PreTrainedTokenizerFast.from_pretrained(str(directory), split_special_tokens=True)
    for text in texts:
        assert ours.encode(text, allowed_special="all") == theirs.encode(text, add_special_tokens=False), text
        assert ours.encode_with_special_tokens(text) == theirs(text)["input_ids"], text
        ordinary = ours.encode_ordinary(text)
        assert ordinary == split.encode(text, add_special_tokens=False), text
        assert ours.decode(ordinary) == theirs.decode(ordinary), text
        framed = ours.encode_with_special_tokens(text)
        assert ours.decode(framed) == theirs.decode(framed), text


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, data_dir):
    """GPT-2's tokenizer.json built by `tokenizers` alone from OpenAI's encoder.json/vocab.bpe."""
    source = data_dir / "gpt2_bpe"
    directory = tmp_path_factory.mktemp("gpt2_json")
    built = hf.Tokenizer(hf.models.BPE.from_file(str(source / "encoder.json"), str(source / "vocab.bpe")))
    built.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    built.decoder = hf.decoders.ByteLevel()
    built.post_processor = hf.processors.ByteLevel(trim_offsets=False)
    built.add_special_tokens([hf.AddedToken("<|endoftext|>", special=True)])
    built.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "add_bos_token": False}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def test_gpt2_tokenizer_json_reproduces_the_215_vectors_and_transformers(gpt2_dir, data_dir):
    ours = load(gpt2_dir)
    theirs = _transformers(gpt2_dir)
    assert isinstance(ours, HFTokenizer)
    assert (ours.vocab_size, ours.eos_id, ours.bos_id) == (50257, 50256, None)
    records = [json.loads(line) for line in (data_dir / "gpt2_bpe/tokenization_vectors.jsonl").open()]
    assert len(records) == 215
    for record in records:
        allowed = "all" if "special" in record["source"] else ()
        ids = ours.encode(record["text"], allowed_special=allowed)
        assert ids == record["ids"], record
        assert ids == theirs.encode(record["text"], add_special_tokens=False, split_special_tokens=not allowed)
        assert ours.decode(ids) == record["text"] == theirs.decode(ids)
    assert ours.encode_batch([r["text"] for r in records]) == [ours.encode_ordinary(r["text"]) for r in records]
    assert load(gpt2_dir / "tokenizer.json").encode("hello world") == [31373, 995]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A Llama-style tokenizer: ▁ for spaces, BPE with byte fallback, <s> put in front by the
    post-processor; one added token only in tokenizer_config.json's added_tokens_decoder and
    one extra special."""
    trainer_model = hf.Tokenizer(hf.models.BPE(unk_token="<unk>"))
    trainer_model.normalizer = _llama_normalizer()
    trainer = hf.trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    trainer_model.train_from_iterator(CORPUS, trainer)
    trained = json.loads(trainer_model.to_str())["model"]
    vocab = dict(trained["vocab"])
    for token in BYTES:
        vocab.setdefault(token, len(vocab))
    merges = [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in trained["merges"]]
    built = hf.Tokenizer(hf.models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    built.normalizer = _llama_normalizer()
    built.decoder = hf.decoders.Sequence([hf.decoders.Replace("▁", " "), hf.decoders.ByteFallback(),
                                          hf.decoders.Fuse(), hf.decoders.Strip(" ", 1, 0)])
    built.add_special_tokens([hf.AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    built.post_processor = hf.processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                            special_tokens=[("<s>", 1)])
    directory = tmp_path_factory.mktemp("llama_json")
    built.save(str(directory / "tokenizer.json"))
    size = built.get_vocab_size()
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
        "added_tokens_decoder": {
            str(i): {"content": t, "special": True, "normalized": False, "lstrip": False, "rstrip": False,
                     "single_word": False} for i, t in enumerate(("<unk>", "<s>", "</s>"))
        } | {str(size): {"content": "<tool>", "special": False, "normalized": False, "lstrip": False,
                         "rstrip": False, "single_word": False}},
        "extra_special_tokens": ["<|im_end|>"],
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def _llama_normalizer():
    return hf.normalizers.Sequence([hf.normalizers.Prepend("▁"), hf.normalizers.Replace(" ", "▁")])


def test_llama_style_byte_fallback_bpe_equals_transformers(llama_dir):
    ours = load(llama_dir)
    size = json.loads((llama_dir / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    tool = next(int(i) for i, t in size.items() if t["content"] == "<tool>")
    assert (ours.bos_id, ours.eos_id, ours.unk_id) == (1, 2, 0)
    assert ours.token_to_id("<tool>") == tool and "<tool>" not in ours.special_tokens
    assert {"<s>", "</s>", "<unk>", "<|im_end|>"} <= set(ours.special_tokens)
    assert ours.encode_with_special_tokens("Hello")[0] == 1
    assert tool in ours.encode_ordinary("a <tool> b")  # an added, non-special token is ordinary text
    assert 1 not in ours.encode_ordinary("<s>") and ours.encode("<s>", allowed_special="all") == [1]
    _assert_same_as_transformers(ours, llama_dir, TEXTS)


def test_an_unseen_character_falls_back_to_its_utf8_bytes(llama_dir):
    ours = load(llama_dir)
    byte_ids = [ours.token_to_id(f"<0x{byte:02X}>") for byte in "ꙮ".encode()]
    assert ours.encode_ordinary("ꙮ")[-3:] == byte_ids
    assert ours.decode(ours.encode_ordinary("aꙮ")) == "aꙮ"


@pytest.fixture(scope="module")
def wordpiece_dir(tmp_path_factory):
    """A BERT-style uncased WordPiece with [CLS] $A [SEP] framing and the clean-up on decode."""
    built = hf.Tokenizer(hf.models.WordPiece(unk_token="[UNK]"))
    built.normalizer = hf.normalizers.BertNormalizer(lowercase=True)
    built.pre_tokenizer = hf.pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    built.train_from_iterator(CORPUS, hf.trainers.WordPieceTrainer(vocab_size=400, special_tokens=specials,
                                                                   show_progress=False))
    built.post_processor = hf.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", built.token_to_id("[CLS]")), ("[SEP]", built.token_to_id("[SEP]"))])
    built.decoder = hf.decoders.WordPiece()
    directory = tmp_path_factory.mktemp("wordpiece_json")
    built.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "do_lower_case": True,
              "clean_up_tokenization_spaces": True, "unk_token": "[UNK]", "sep_token": "[SEP]",
              "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def test_wordpiece_equals_transformers(wordpiece_dir):
    ours = load(wordpiece_dir)
    assert (ours.bos_id, ours.eos_id, ours.pad_id, ours.unk_id) == (2, 3, 0, 1)
    assert ours.encode_with_special_tokens("hello")[0] == 2 and ours.encode_with_special_tokens("hi")[-1] == 3
    assert ours.decode(ours.encode_ordinary("It's done .")) == "it's done."  # transformers' clean-up
    _assert_same_as_transformers(ours, wordpiece_dir, [*TEXTS, "[CLS] a [SEP] b [MASK] c"])


def test_a_tokenizer_json_that_tokenizers_cannot_read_is_one_line_naming_it(tmp_path):
    cases = {
        "not_json": ("{ nope", "not valid JSON|cannot be read by the tokenizers library"),
        "not_a_tokenizer": (json.dumps({"model": {"type": "Nonsense"}}), "cannot be read by the tokenizers library"),
    }
    for name, (content, message) in cases.items():
        directory = tmp_path / name
        directory.mkdir()
        (directory / "tokenizer.json").write_text(content)
        for path in (directory, directory / "tokenizer.json"):
            with pytest.raises(DataError, match=message) as err:
                load(path)
            assert str(directory / "tokenizer.json") in str(err.value) and "\n" not in str(err.value)


def test_a_tokenizer_config_that_is_not_json_is_one_line_naming_it(gpt2_dir, tmp_path):
    (tmp_path / "tokenizer.json").write_text((gpt2_dir / "tokenizer.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "<|endoftext|>",')
    with pytest.raises(DataError, match="not valid JSON") as err:
        load(tmp_path)
    assert str(tmp_path / "tokenizer_config.json") in str(err.value) and "\n" not in str(err.value)


def test_a_config_whose_added_token_ids_disagree_with_tokenizer_json_is_refused(gpt2_dir, tmp_path):
    (tmp_path / "tokenizer.json").write_text((gpt2_dir / "tokenizer.json").read_text())
    config = {"added_tokens_decoder": {"7": {"content": "<|endoftext|>", "special": True}}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="declares '<|endoftext|>' as id 7 but tokenizer.json gives it 50256"):
        load(tmp_path)


def test_a_tokenizer_json_without_post_processor_frames_as_the_config_says(llama_dir, tmp_path):
    """add_eos_token/add_bos_token apply where tokenizer.json has no post-processor (as in
    transformers 4; transformers 5 drops them and frames nothing)."""
    saved = json.loads((llama_dir / "tokenizer.json").read_text())
    saved["post_processor"] = None
    (tmp_path / "tokenizer.json").write_text(json.dumps(saved))
    config = json.loads((llama_dir / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config | {"add_eos_token": True}))
    ours = load(tmp_path)
    plain = ours.encode_ordinary("Hello world")
    assert ours.encode_with_special_tokens("Hello world") == [1, *plain, 2]
    assert ours.bos_id == 1
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config | {"add_bos_token": False}))
    assert load(tmp_path).encode_with_special_tokens("Hello world") == plain
    assert load(tmp_path).bos_id is None


def test_split_special_tokens_in_the_config_keeps_specials_as_text(llama_dir, tmp_path):
    (tmp_path / "tokenizer.json").write_text((llama_dir / "tokenizer.json").read_text())
    config = json.loads((llama_dir / "tokenizer_config.json").read_text()) | {"split_special_tokens": True}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    ours, theirs = load(tmp_path), _transformers(tmp_path)
    text = "a <s> b </s>"
    assert 1 not in ours.encode(text, allowed_special="all")
    assert ours.encode(text, allowed_special="all") == theirs.encode(text, add_special_tokens=False)
