"""The run's tokenizer: loaded from `data.tokenizer_dir`, or trained by lmjax on the
corpus's train split (with `data.sources`: a by-weight sample of the sources' train
documents) and kept in the cache dir beside the prepared data for later runs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lmjax.config import DataConfig, resolve_cache_dir
from lmjax.data.corpora import prepare_corpus
from lmjax.data.locking import atomic_dir, file_lock
from lmjax.data.sample_text import mixture_name, training_documents
from lmjax.data.sources import resolve_sources
from lmjax.errors import DataError
from lmjax.objectives import tokenizer_training_options
from lmjax.tokenizers import Tokenizer, load, train_tokenizer
from lmjax.tokenizers.base import is_saved
from lmjax.tokenizers.bpe import END_OF_TEXT, PAD

# SentencePiece's byte fallback spends 256 ids on raw bytes; below this vocabulary size
# that would leave fewer than half the ids for learned pieces, so characters missing
# from the train split map to <unk> instead.
BYTE_FALLBACK_MIN_VOCAB = 512


def build_tokenizer(data: DataConfig, vocab_size: int) -> Tokenizer:
    """The tokenizer `data` names (a saved one, or one trained on the corpus with `vocab_size`
    ids), with the end-of-document and pad ids packing needs."""
    if data.tokenizer_dir:
        tokenizer = load(data.tokenizer_dir)
        where = data.tokenizer_dir
    else:
        name, documents = _training_text(data)
        directory = tokenizer_dir(data, vocab_size, name)
        with file_lock(directory):
            if not is_saved(directory):
                _train_into(directory, data, vocab_size, documents())
        tokenizer = load(directory)
        where = str(directory)
    _check(tokenizer, where, vocab_size)
    return tokenizer


def _training_text(data: DataConfig):
    """(cache name, a function giving the training documents) of the corpus or the sources."""
    if data.sources:
        sources = resolve_sources(data)
        return mixture_name(data, sources), lambda: training_documents(data, sources)
    corpus = prepare_corpus(data)
    return corpus.name, lambda: (record["text"].decode("utf-8") for record in corpus.documents("train"))


def tokenizer_dir(data: DataConfig, vocab_size: int, name: str) -> Path:
    """Keyed by corpus (its content, for files), kind, vocabulary size and training options
    (a tokenizer without T5's sentinels must not serve a span-corruption run)."""
    options = json.dumps(_train_options(data, vocab_size), sort_keys=True, default=list)
    digest = hashlib.sha256(options.encode()).hexdigest()[:10]
    return resolve_cache_dir(data) / "tokenizers" / name / f"{data.tokenizer}-{vocab_size}-{digest}"


def _train_into(directory: Path, data: DataConfig, vocab_size: int, documents) -> None:
    with atomic_dir(directory) as tmp:
        train_file = tmp / "train.txt"
        train_file.write_text("\n".join(documents), encoding="utf-8")
        tokenizer = train_tokenizer(data.tokenizer, [train_file], vocab_size,
                                    **_train_options(data, vocab_size))
        train_file.unlink()
        tokenizer.save(tmp)


def _train_options(data: DataConfig, vocab_size: int) -> dict:
    """The objective's special tokens (T5 sentinels, BERT's [CLS]/[SEP]/[MASK]), plus: a small
    corpus may hold fewer pieces than asked for (take what it has, not an error), and BPE
    gets a pad token beside end-of-text, which the last, partial window needs."""
    kind = data.tokenizer
    options = tokenizer_training_options(data)
    if kind == "sentencepiece":
        options.update(byte_fallback=vocab_size >= BYTE_FALLBACK_MIN_VOCAB, hard_vocab_limit=False)
        if data.character_coverage != 1.0:
            options.update(character_coverage=data.character_coverage)
    if kind == "bpe":
        options.update(special_tokens=(END_OF_TEXT, PAD))
    return options


def _check(tokenizer: Tokenizer, where: str, model_vocab_size: int) -> None:
    for role in ("eos_id", "pad_id"):
        if getattr(tokenizer, role) is None:
            raise DataError(
                f"the tokenizer in {where} has no {role.removesuffix('_id')} token, which packing needs; "
                "use one trained by lmjax (unset data.tokenizer_dir)"
            )
    if tokenizer.vocab_size > model_vocab_size:
        raise DataError(
            f"the tokenizer in {where} has {tokenizer.vocab_size} ids but model.vocab_size={model_vocab_size}; "
            f"set model.vocab_size>={tokenizer.vocab_size}"
        )
