"""The tokenizer that came with a Hugging Face checkpoint, as an lmjax tokenizer."""

from __future__ import annotations

import pathlib

from lmjax.tokenizers import BPETokenizer, HFTokenizer, SentencePieceTokenizer, Tokenizer, WordPieceTokenizer
from lmjax.tokenizers.hf_config import CONFIG_FILE, read_config

T5_EXTRA_IDS = 100


def read_tokenizer(directory: pathlib.Path) -> Tokenizer | None:
    """The checkpoint's tokenizer from BERT's vocab.txt, GPT-2's vocab.json and merges.txt,
    T5's spiece.model or else the tokenizer.json every model saved by transformers 5 has
    (Llama, Qwen2, ...: any architecture), if the directory has one; None otherwise."""
    directory = pathlib.Path(directory)
    options = read_config(directory / CONFIG_FILE)
    if (directory / "vocab.txt").is_file():
        return WordPieceTokenizer.from_vocab_file(directory / "vocab.txt",
                                                  lowercase=bool(options.get("do_lower_case", True)))
    if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return BPETokenizer.from_gpt2_files(directory / "vocab.json", directory / "merges.txt")
    if (directory / "spiece.model").is_file():
        return SentencePieceTokenizer.from_file(directory / "spiece.model",
                                                extra_ids=int(options.get("extra_ids", T5_EXTRA_IDS)))
    if (directory / "tokenizer.json").is_file():
        return HFTokenizer.from_file(directory / "tokenizer.json")
    return None
