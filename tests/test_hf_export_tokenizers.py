"""The tokenizer in a `lmjax convert to-hf` export: Hugging Face's `tokenizer.json` for BPE
(any pre-tokenizer pattern) and WordPiece, checked with transformers' AutoTokenizer against
lmjax's own encodings and GPT-2's published vectors; `convert from-hf` of the export reads
it back as the `hf` kind with the same encodings."""

import json

import pytest
from hf_export_helpers import TEXTS, random_export, to_hf

from lmjax import cli
from lmjax.config import ModelConfig
from lmjax.runs import open_run
from lmjax.runs.exporters import tokenizer_files
from lmjax.tokenizers import BPETokenizer, WordPieceTokenizer
from lmjax.tokenizers.bpe import GPT2_PATTERN

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

CORPUS = ("First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. "
          "You are all resolved rather to die than to famish? Resolved. resolved. 12345 678 "
          "Ünïcödé héllo wörld ça va l'été 中文字 — tabs\tand  spaces\n") * 20
OWN_PATTERN = r"\s?\p{L}+|\s?\p{N}|\s?[^\s\p{L}\p{N}]+|\s+"  # one digit at a time, unlike GPT-2


def tokenizers(data_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    return {
        "gpt2": lambda: BPETokenizer.from_gpt2_files(data_dir / "gpt2_bpe" / "encoder.json",
                                                     data_dir / "gpt2_bpe" / "vocab.bpe"),
        "bpe_own_pattern": lambda: BPETokenizer.train([corpus], 300, pattern=OWN_PATTERN),
        "wordpiece": lambda: WordPieceTokenizer.train([corpus], 120, lowercase=True),
    }


@pytest.mark.parametrize("kind", ["gpt2", "bpe_own_pattern", "wordpiece"])
def test_the_exported_tokenizer_json_encodes_as_lmjax_and_reimports_as_hf(kind, data_dir, tmp_path):
    tokenizer = tokenizers(data_dir, tmp_path)[kind]()
    arch = "bert" if kind == "wordpiece" else "gpt"
    model = ModelConfig(arch=arch, vocab_size=tokenizer.vocab_size, d_model=8, n_layers=1,
                        n_heads=2, d_ff=16, max_len=16)
    source = random_export(tmp_path / "lmjax", model, tokenizer)
    export = to_hf(source, tmp_path / "hf")
    assert (export / "tokenizer.json").is_file()
    assert not {"vocab.json", "merges.txt", "vocab.txt", "lmjax_tokenizer.json"} & {
        path.name for path in export.iterdir()}
    json.loads((export / "tokenizer.json").read_text())["model"]  # Hugging Face's format
    theirs = transformers.AutoTokenizer.from_pretrained(export)
    texts = [*TEXTS, CORPUS[:300]]
    for text in texts:
        assert theirs(text, add_special_tokens=False)["input_ids"] == tokenizer.encode(text), text
    if kind == "gpt2":  # and GPT-2's published ids, independently of lmjax
        lines = (data_dir / "gpt2_bpe" / "tokenization_vectors.jsonl").read_text().split("\n")
        records = [json.loads(line) for line in lines if line]
        # transformers matches special tokens in text; those vectors encode them as text
        for record in [record for record in records if "<|endoftext|>" not in record["text"]]:
            assert theirs(record["text"], add_special_tokens=False)["input_ids"] == record["ids"]

    assert cli.main(["convert", "from-hf", str(export), str(tmp_path / "back")]) == 0
    back = open_run(tmp_path / "back").tokenizer
    assert back.kind == "hf"
    assert [back.encode(text) for text in texts] == [tokenizer.encode(text) for text in texts]
    assert back.special_tokens == tokenizer.special_tokens


def test_without_tokenizers_only_a_gpt2_pattern_bpe_is_written(monkeypatch, tmp_path):
    """GPT2Tokenizer (the fallback without tokenizer.json) has GPT-2's pattern only."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    own, gpt2_like = (BPETokenizer.train([corpus], 300, pattern=pattern)
                      for pattern in (OWN_PATTERN, GPT2_PATTERN))
    assert tokenizer_files.unsupported(own) is None
    monkeypatch.setattr(tokenizer_files, "_has_tokenizers", lambda: False)
    assert "pattern is not GPT-2's" in tokenizer_files.unsupported(own)
    assert tokenizer_files.unsupported(gpt2_like) is None
