"""Reading a text file as sentences of tokens in one unit: word, char, byte or tokenizer ids.

Each non-empty line is one sentence. The unit is stored with a trained model, so that
evaluation reads the test text the same way the training text was read.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from lmjax.errors import ConfigError, DataError

UNITS = ("word", "char", "byte", "tokenizer")


class TextUnit:
    """How lines become token sequences and token sequences become text again."""

    def __init__(self, unit: str, tokenizer_dir: str | None = None):
        if unit not in UNITS:
            raise ConfigError(f"unknown unit {unit!r}: choose one of {', '.join(UNITS)}")
        if (unit == "tokenizer") != (tokenizer_dir is not None):
            raise ConfigError("--tokenizer DIR goes with --unit tokenizer, and only with it")
        self.unit = unit
        self.tokenizer_dir = tokenizer_dir
        self._tokenizer = None
        if unit == "tokenizer":
            from lmjax import tokenizers

            self._tokenizer = tokenizers.load(tokenizer_dir)

    def split(self, line: str) -> list:
        """One line as tokens of this unit."""
        if self.unit == "word":
            return line.split()
        if self.unit == "char":
            return list(line)
        if self.unit == "byte":
            return list(line.encode("utf-8"))
        return self._tokenizer.encode(line)

    def join(self, tokens: Sequence) -> str:
        """Tokens back to text (unknown and special symbols are shown as they are)."""
        if self.unit == "word":
            return " ".join(map(str, tokens))
        if self.unit == "char":
            return "".join(map(str, tokens))
        ints = [t for t in tokens if isinstance(t, int)]
        if self.unit == "byte":
            return bytes(ints).decode("utf-8", errors="replace")
        return self._tokenizer.decode(ints)

    def read(self, path: str | pathlib.Path) -> list[list]:
        """The non-empty lines of a UTF-8 file as sentences."""
        try:
            text = pathlib.Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"text file {path} not found") from None
        except UnicodeDecodeError:
            raise DataError(f"{path} is not UTF-8 text") from None
        return [self.split(line) for line in text.splitlines() if line.strip()]
