"""Tokenizers behind one interface: byte-level BPE, WordPiece, SentencePiece, and any
Hugging Face tokenizer.json (run by `tokenizers`).

The data pipeline and the trainer need only two entry points: `train_tokenizer(kind, ...)`
to build one from the config, and `load(path)` to rebuild whatever a run directory saved
(or read a model directory's tokenizer.json).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lmjax.errors import DataError
from lmjax.tokenizers.base import Tokenizer, read_meta
from lmjax.tokenizers.bpe import BPETokenizer
from lmjax.tokenizers.hf_tokenizer import HFTokenizer
from lmjax.tokenizers.spm import SentencePieceTokenizer
from lmjax.tokenizers.wordpiece import WordPieceTokenizer

KINDS: dict[str, type[Tokenizer]] = {  # the kinds lmjax trains
    BPETokenizer.kind: BPETokenizer,
    SentencePieceTokenizer.kind: SentencePieceTokenizer,
    WordPieceTokenizer.kind: WordPieceTokenizer,
}
LOADABLE_KINDS: dict[str, type[Tokenizer]] = {**KINDS, HFTokenizer.kind: HFTokenizer}  # read, never trained

__all__ = [
    "KINDS",
    "LOADABLE_KINDS",
    "BPETokenizer",
    "HFTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordPieceTokenizer",
    "load",
    "train_tokenizer",
]


def load(directory: str | Path) -> Tokenizer:
    """Rebuild any tokenizer saved with `Tokenizer.save`, whatever its kind, or read a
    directory's (or a file's) Hugging Face tokenizer.json with its tokenizer_config.json."""
    directory = Path(directory)
    if directory.suffix == ".json" and directory.is_file():
        return HFTokenizer.from_file(directory)
    meta = read_meta(directory)
    return _tokenizer_class(meta["kind"], f"{directory} holds", LOADABLE_KINDS).load(directory)


def train_tokenizer(kind: str, files: Sequence[str | Path], vocab_size: int, **options) -> Tokenizer:
    """Train a tokenizer of `kind` ("bpe", "wordpiece" or "sentencepiece") on text files."""
    return _tokenizer_class(kind, "kind", KINDS).train(files, vocab_size=vocab_size, **options)


def _tokenizer_class(kind: str, where: str, kinds: dict[str, type[Tokenizer]]) -> type[Tokenizer]:
    if kind not in kinds:
        raise DataError(f"{where} an unknown tokenizer kind {kind!r}; known kinds: {', '.join(sorted(kinds))}")
    return kinds[kind]
