"""The tokenizer that came with a Hugging Face checkpoint, as an lmjax tokenizer."""

from __future__ import annotations

import json
import pathlib

from lmjax.tokenizers import BPETokenizer, SentencePieceTokenizer, Tokenizer, WordPieceTokenizer

T5_EXTRA_IDS = 100


def read_tokenizer(directory: pathlib.Path) -> Tokenizer | None:
    """The checkpoint's tokenizer from BERT's vocab.txt, GPT-2's vocab.json and merges.txt or
    T5's spiece.model, if the directory has one; None otherwise."""
    directory = pathlib.Path(directory)
    options = _tokenizer_config(directory)
    if (directory / "vocab.txt").is_file():
        return WordPieceTokenizer.from_vocab_file(directory / "vocab.txt",
                                                  lowercase=bool(options.get("do_lower_case", True)))
    if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return BPETokenizer.from_gpt2_files(directory / "vocab.json", directory / "merges.txt")
    if (directory / "spiece.model").is_file():
        return SentencePieceTokenizer.from_file(directory / "spiece.model",
                                                extra_ids=int(options.get("extra_ids", T5_EXTRA_IDS)))
    return None


def _tokenizer_config(directory: pathlib.Path) -> dict:
    path = directory / "tokenizer_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}
