"""Tokenizer fertility per source: UTF-8 bytes and whitespace-separated words per token.

One vocabulary serves every language of a mixture, and not equally: more bytes per token
means shorter sequences (cheaper training, longer context in the same window) for that
language. GPT-2's byte-level BPE, trained mostly on English, is the common yardstick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from lmjax.data.sources import Source
from lmjax.errors import DataError
from lmjax.tokenizers import Tokenizer
from lmjax.tokenizers.bpe import BPETokenizer


@dataclasses.dataclass(frozen=True)
class Fertility:
    """Counts over one sample of text under one tokenizer."""

    bytes: int
    words: int
    tokens: int

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / max(self.tokens, 1)

    @property
    def words_per_token(self) -> float:
        return self.words / max(self.tokens, 1)


def measure(texts: Sequence[str], tokenizer: Tokenizer) -> Fertility:
    """Documents are encoded one by one (no eos), as they are packed for training."""
    tokens = sum(len(ids) for ids in tokenizer.encode_batch(list(texts)))
    return Fertility(bytes=sum(len(t.encode("utf-8")) for t in texts),
                     words=sum(len(t.split()) for t in texts), tokens=tokens)


def sample(source: Source, max_bytes: int) -> list[str]:
    """The source's first documents (after its filters), about `max_bytes` of them."""
    texts, size = [], 0
    for path in source.files:
        for text in source.documents(path):
            texts.append(text)
            size += len(text.encode("utf-8"))
            if size >= max_bytes:
                return texts
    return texts


def gpt2_tokenizer(data_dir: Path) -> BPETokenizer:
    """GPT-2's BPE from `<data dir>/gpt2_bpe/` (encoder.json and vocab.bpe)."""
    folder = Path(data_dir) / "gpt2_bpe"
    if not (folder / "encoder.json").is_file():
        raise DataError(f"GPT-2's encoder.json and vocab.bpe are not in {folder}: put them there "
                        "(openai/gpt-2 release files) or point LMJAX_DATA_DIR at a folder holding gpt2_bpe/")
    return BPETokenizer.from_gpt2_files(folder / "encoder.json", folder / "vocab.bpe")


def report(sources: Sequence[Source], tokenizer: Tokenizer, reference: Tokenizer,
           max_bytes: int) -> list[dict]:
    """One row per source: bytes and words per token under both tokenizers."""
    rows = []
    for source in sources:
        texts = sample(source, max_bytes)
        ours, theirs = measure(texts, tokenizer), measure(texts, reference)
        rows.append({"source": source.name, "bytes": ours.bytes, "words": ours.words,
                     "tokens": ours.tokens, "bytes_per_token": ours.bytes_per_token,
                     "words_per_token": ours.words_per_token, "gpt2_tokens": theirs.tokens,
                     "gpt2_bytes_per_token": theirs.bytes_per_token,
                     "gpt2_words_per_token": theirs.words_per_token})
    return rows
