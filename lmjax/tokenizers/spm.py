"""SentencePiece (T5 and Llama style) through the `sentencepiece` library.

lmjax trains models that must reproduce their corpus exactly, so training defaults keep
every character: no normalization, whitespace kept as it is, a piece for "\\n" (the
trainer reads one sentence per line and would otherwise never see a newline), and byte
fallback for characters outside the vocabulary. Ids: <unk>=0, <s>=1, </s>=2, <pad>=3.

T5's sentinels live after the SentencePiece pieces, counting down from the end of the
vocabulary: `<extra_id_i>` is `vocab_size - 1 - i`, as in T5's own vocabulary.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece

from lmjax.errors import ConfigError, DataError
from lmjax.tokenizers.base import AllowedSpecial, Tokenizer, read_corpus_text, require_nonempty

MODEL_FILE = "spm.model"
MODEL_TYPES = ("unigram", "bpe")
# SentencePiece checks 0.98 <= character_coverage <= 1 (trainer_interface.cc).
CHARACTER_COVERAGE = (0.98, 1.0)


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model plus an optional block of T5 sentinel ids after it."""

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, extra_ids: int = 0) -> None:
        if extra_ids < 0:
            raise DataError(f"extra_ids must be >= 0, got {extra_ids}")
        self.model_proto = model_proto
        self.extra_ids = extra_ids
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
        self._piece_count = self.processor.get_piece_size()
        self._special_tokens = self._collect_special_tokens()

    @classmethod
    def from_file(cls, model_path: str | Path, extra_ids: int = 0) -> SentencePieceTokenizer:
        """Wrap an existing `.model` file (e.g. Llama's or T5's)."""
        model_path = Path(model_path)
        if not model_path.is_file():
            raise DataError(f"SentencePiece model {model_path} does not exist")
        try:
            return cls(model_path.read_bytes(), extra_ids=extra_ids)
        except RuntimeError as err:
            raise DataError(f"{model_path} is not a SentencePiece model ({_first_line(err)})") from None

    @classmethod
    def train(
        cls,
        files: Sequence[str | Path],
        vocab_size: int,
        model_type: str = "unigram",
        extra_ids: int = 0,
        character_coverage: float = 1.0,
        byte_fallback: bool = True,
        user_defined_symbols: Sequence[str] = ("\n",),
        max_sentence_length: int = 1 << 16,
        num_threads: int | None = None,
        **trainer_options,
    ) -> SentencePieceTokenizer:
        """Train on UTF-8 text files; `vocab_size` counts the `extra_ids` sentinels too.

        Deterministic: the whole corpus is used (no sentence sampling). Extra keyword
        arguments go straight to `SentencePieceTrainer.train`.
        """
        if model_type not in MODEL_TYPES:
            raise DataError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
        _check_ranges(extra_ids, character_coverage)
        texts = [read_corpus_text(path) for path in files]
        require_nonempty(texts, files)
        piece_count = vocab_size - extra_ids
        minimum = 4 + len(user_defined_symbols) + (256 if byte_fallback else 0)
        if piece_count <= minimum:
            raise DataError(
                f"vocab_size {vocab_size} is too small: {minimum} ids go to <unk> <s> </s> <pad>, "
                f"user-defined symbols{' and the 256 byte pieces' if byte_fallback else ''}, "
                f"plus {extra_ids} sentinels; ask for more than {minimum + extra_ids}"
            )
        model = io.BytesIO()
        options = dict(
            vocab_size=piece_count,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=byte_fallback,
            user_defined_symbols=list(user_defined_symbols),
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            split_digits=False,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=3,
            input_sentence_size=0,
            max_sentence_length=max_sentence_length,
            num_threads=num_threads or min(os.cpu_count() or 1, 8),
            minloglevel=2,
        )
        options.update(trainer_options)
        sentences = (line for text in texts for line in text.split("\n"))
        try:
            sentencepiece.SentencePieceTrainer.train(sentence_iterator=sentences, model_writer=model, **options)
        except RuntimeError as err:
            raise DataError(_training_failure(err, piece_count, character_coverage)) from None
        return cls(model.getvalue(), extra_ids=extra_ids)

    # -- the interface ------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._piece_count + self.extra_ids

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    def encode_ordinary(self, text: str) -> list[int]:
        return self.processor.encode(text)

    def encode_batch(self, texts: Iterable[str], allowed_special: AllowedSpecial = ()) -> list[list[int]]:
        """Batches without specials go to SentencePiece's multi-threaded encoder."""
        if not self._allowed_special_ids(allowed_special):
            return self.processor.encode(list(texts))
        return super().encode_batch(texts, allowed_special)

    def decode(self, ids: Sequence[int]) -> str:
        parts: list[str] = []
        run: list[int] = []
        for token_id in ids:
            token_id = int(token_id)
            if not 0 <= token_id < self.vocab_size:
                raise DataError(f"token id {token_id} is outside this tokenizer's vocabulary (size {self.vocab_size})")
            if token_id < self._piece_count and not self.processor.is_control(token_id):
                run.append(token_id)
                continue
            parts.append(self.processor.decode(run))
            run = []
            parts.append(self._id_to_special[token_id])
        parts.append(self.processor.decode(run))
        return "".join(parts)

    def piece(self, token_id: int) -> str:
        """The piece string of an id (sentinels included), for inspection."""
        if token_id >= self._piece_count:
            return f"<extra_id_{self.vocab_size - 1 - token_id}>"
        return self.processor.id_to_piece(token_id)

    @property
    def bos_id(self) -> int | None:
        return _present(self.processor.bos_id())

    @property
    def eos_id(self) -> int | None:
        return _present(self.processor.eos_id())

    @property
    def pad_id(self) -> int | None:
        return _present(self.processor.pad_id())

    @property
    def unk_id(self) -> int | None:
        return _present(self.processor.unk_id())

    # -- files -------------------------------------------------------------------

    def _save_files(self, directory: Path) -> dict:
        (directory / MODEL_FILE).write_bytes(self.model_proto)
        return {"model_file": MODEL_FILE, "extra_ids": self.extra_ids}

    @classmethod
    def _load_files(cls, directory: Path, meta: dict) -> SentencePieceTokenizer:
        return cls.from_file(directory / meta.get("model_file", MODEL_FILE), extra_ids=int(meta.get("extra_ids", 0)))

    def _collect_special_tokens(self) -> dict[str, int]:
        """Control pieces (<s>, </s>, <pad>) and sentinels; SentencePiece itself never emits them from text."""
        specials = {
            self.processor.id_to_piece(i): i for i in range(self._piece_count) if self.processor.is_control(i)
        }
        for i in range(self.extra_ids):
            specials[f"<extra_id_{i}>"] = self.vocab_size - 1 - i
        self._id_to_special = {token_id: token for token, token_id in specials.items()}
        return specials


def _check_ranges(extra_ids: int, character_coverage: float) -> None:
    """What SentencePiece refuses only after reading the corpus, and without saying why."""
    if extra_ids < 0:
        raise ConfigError(f"extra_ids (--extra-ids) is {extra_ids}: give 0 or more sentinel ids")
    low, high = CHARACTER_COVERAGE
    if not low <= character_coverage <= high:
        raise ConfigError(
            f"character_coverage (--character-coverage) is {character_coverage}: SentencePiece "
            f"takes {low} to {high}, the share of characters kept as pieces (rarer ones become bytes)"
        )


def _present(token_id: int) -> int | None:
    """SentencePiece says -1 for a special token the model does not have."""
    return None if token_id < 0 else token_id


def _training_failure(err: RuntimeError, piece_count: int, character_coverage: float) -> str:
    """SentencePiece's error as an lmjax one-liner: too many distinct characters for the
    vocabulary (a binary or many-script corpus) gets the fix in lmjax's own option names."""
    if "sentences_.empty()" in str(err):
        return (
            "SentencePiece found no usable line in the corpus: every line is empty or longer than "
            "its max_sentence_length (64 KiB); give text with line breaks (a binary file is no "
            "training text)"
        )
    found = re.search(r"required_chars\. (\d+) vs (\d+)", str(err))
    if not found:
        return f"SentencePiece training failed: {_first_line(err)}"
    required = int(found.group(2))
    return (
        f"the corpus has about {required} distinct characters that character_coverage="
        f"{character_coverage} keeps, more than the {piece_count} pieces asked for: raise the "
        f"vocabulary size (model.vocab_size, or --vocab-size) above {required}, or lower "
        "data.character_coverage (--character-coverage), (0.98 to 1), so rare characters "
        "fall back to bytes; a binary file is no training text"
    )


def _first_line(err: Exception) -> str:
    """The last line of a SentencePiece error, without its "src/file.cc(123) [check]" prefix."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    message = lines[-1].partition("] ")[2]
    if message.strip():
        return message.strip()
    check = re.search(r"\[(.*)\]\s*$", lines[-1])  # a failed CHECK has no message: say which check it was
    return f"its check `{check.group(1)}` failed" if check else lines[-1].strip()
