"""tokenizer.json between lmjax and transformers both ways: a GPT-2 saved by transformers 5
(tokenizer.json and tokenizer_config.json only) opens with `open_run` and as `--tokenizer`;
a saved lmjax BPE or WordPiece tokenizer writes a tokenizer.json that transformers' fast
tokenizer reads to the same ids; directories saved before the description moved still load."""

import json
import shutil

import numpy as np
import pytest

from lmjax import cli
from lmjax.runs import open_run
from lmjax.runs.open import locate
from lmjax.tokenizers import BPETokenizer, HFTokenizer, SentencePieceTokenizer, WordPieceTokenizer, load

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXTS = [
    "Hello world",
    "",
    "  runs   of spaces\t\ttabs\n\n\nnewlines  ",
    "Ünïcödé naïve café — 東京 🚀 emoji",
    "text <|endoftext|> more [SEP] [MASK] text",
    "don't stop. It's 3.14! Isn't it ?",
    "To be, or not to be: that is the question",
]


def _vectors(data_dir):
    with (data_dir / "gpt2_bpe/tokenization_vectors.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def gpt2_saved(tmp_path_factory, data_dir):
    """A random tiny GPT2LMHeadModel with GPT-2's tokenizer, as transformers 5 saves them."""
    source = data_dir / "gpt2_bpe"
    tokenizer = transformers.GPT2Tokenizer(vocab=str(source / "encoder.json"), merges=str(source / "vocab.bpe"))
    config = transformers.GPT2Config(vocab_size=50257, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("gpt2_saved")
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    assert not (directory / "vocab.json").exists() and (directory / "tokenizer.json").is_file()
    return directory


def test_a_transformers5_gpt2_directory_opens_with_its_tokenizer(gpt2_saved, data_dir):
    run = open_run(gpt2_saved)
    assert isinstance(run.tokenizer, HFTokenizer)
    assert (run.tokenizer.eos_id, run.tokenizer.bos_id, run.tokenizer.vocab_size) == (50256, None, 50257)
    for record in _vectors(data_dir):
        allowed = "all" if "special" in record["source"] else ()
        assert run.tokenizer.encode(record["text"], allowed_special=allowed) == record["ids"], record
        assert run.tokenizer.decode(record["ids"]) == record["text"]


def test_its_logits_on_text_encoded_by_lmjax_equal_transformers(gpt2_saved):
    run = open_run(gpt2_saved)
    reference = transformers.AutoTokenizer.from_pretrained(str(gpt2_saved))
    text = "Hello world, it's a tokenizer.json test<|endoftext|>"
    ids = run.tokenizer.encode(text, allowed_special="all")
    assert ids == reference.encode(text)
    ours = np.asarray(run.model.apply({"params": run.params}, input_ids=np.array([ids], np.int32)))
    model = transformers.GPT2LMHeadModel.from_pretrained(str(gpt2_saved)).eval()
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits.numpy()
    assert np.abs(ours - theirs).max() <= 1e-4


def test_the_directory_or_its_tokenizer_json_serves_as_tokenizer(gpt2_saved, tmp_path, capsys):
    found = locate(gpt2_saved)
    expected = [31373, 995]
    for given in (gpt2_saved, gpt2_saved / "tokenizer.json", str(gpt2_saved / "tokenizer.json")):
        assert found.load_tokenizer(given).encode("hello world") == expected
    text = tmp_path / "hello.txt"
    text.write_text("hello world")
    for given in (gpt2_saved, gpt2_saved / "tokenizer.json"):
        capsys.readouterr()
        assert cli.main(["tokenizer", "encode", "--tokenizer", str(given), str(text)]) == 0
        assert capsys.readouterr().out.split() == [str(i) for i in expected]


def test_convert_keeps_the_tokenizer_json_and_the_export_reopens(gpt2_saved, tmp_path):
    export = tmp_path / "export"
    assert cli.main(["convert", "hf", str(gpt2_saved), str(export)]) == 0
    run = open_run(export)
    assert isinstance(run.tokenizer, HFTokenizer) and run.config.data.tokenizer == "bpe"
    assert run.tokenizer.encode("hello world") == [31373, 995]
    assert (export / "tokenizer" / "tokenizer.json").is_file()


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "excerpt.txt"
    path.write_text((data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:60_000])
    return path


def _saved_kinds(corpus, data_dir):
    return {
        "gpt2": BPETokenizer.from_gpt2_files(data_dir / "gpt2_bpe/encoder.json", data_dir / "gpt2_bpe/vocab.bpe"),
        "bpe": BPETokenizer.train([corpus], vocab_size=400, special_tokens=("<|endoftext|>", "<|pad|>")),
        "bpe_own_pattern": BPETokenizer.train([corpus], vocab_size=300, pattern=r"\S+\s*|\s+"),
        "wordpiece": WordPieceTokenizer.train([corpus], vocab_size=400),
        "wordpiece_uncased": WordPieceTokenizer.train([corpus], vocab_size=400, lowercase=True),
    }


def test_transformers_reads_the_tokenizer_json_lmjax_saves(corpus, data_dir, tmp_path):
    for name, ours in _saved_kinds(corpus, data_dir).items():
        directory = ours.save(tmp_path / name)
        theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
        auto = transformers.AutoTokenizer.from_pretrained(str(directory))
        texts = [*TEXTS, *(record["text"] for record in _vectors(data_dir))] if name == "gpt2" else TEXTS
        for text in texts:
            ids = ours.encode(text, allowed_special="all")
            assert theirs.encode(text, add_special_tokens=False) == ids, (name, text)
            assert auto.encode(text, add_special_tokens=False) == ids, (name, text)
            assert theirs.decode(ids) == ours.decode(ids), (name, text)
        assert isinstance(load(directory), type(ours))


def test_a_saved_wordpiece_frames_like_bert_in_transformers(corpus, tmp_path):
    ours = WordPieceTokenizer.train([corpus], vocab_size=400)
    auto = transformers.AutoTokenizer.from_pretrained(str(ours.save(tmp_path)))
    text = "To be, or not to be"
    assert auto(text)["input_ids"] == [ours.bos_id, *ours.encode(text), ours.eos_id]
    assert (auto.cls_token_id, auto.sep_token_id, auto.mask_token_id, auto.pad_token_id) == (2, 3, 4, 0)


def test_a_sentencepiece_tokenizer_keeps_its_model_and_writes_no_tokenizer_json(corpus, tmp_path):
    ours = SentencePieceTokenizer.train([corpus], vocab_size=400)
    ours.save(tmp_path)
    assert (tmp_path / "spm.model").is_file() and not (tmp_path / "tokenizer.json").exists()
    assert load(tmp_path).encode("To be, or not") == ours.encode("To be, or not")


def test_a_directory_saved_before_the_description_moved_still_loads(corpus, tmp_path):
    ours = BPETokenizer.train([corpus], vocab_size=300)
    ours.save(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "tokenizer_config.json").unlink()
    shutil.move(tmp_path / "lmjax_tokenizer.json", tmp_path / "tokenizer.json")
    rebuilt = load(tmp_path)
    assert isinstance(rebuilt, BPETokenizer) and rebuilt.encode(TEXTS[3]) == ours.encode(TEXTS[3])


def test_an_hf_tokenizer_saves_and_reloads_as_itself(gpt2_saved, tmp_path):
    ours = load(gpt2_saved)
    ours.save(tmp_path)
    again = load(tmp_path)
    assert isinstance(again, HFTokenizer)
    for text in TEXTS:
        assert again.encode(text, allowed_special="all") == ours.encode(text, allowed_special="all"), text
    assert again.eos_id == ours.eos_id
