"""BERT's basic tokenizer: clean, optionally lower-case and strip accents, then split on
whitespace and cut every punctuation character out as a word of its own.

Written with regular expressions rather than BERT's per-character loop so that
pre-tokenizing a few megabytes takes a fraction of a second. Definitions follow
BERT's: whitespace is space, tab, newline, carriage return and category Zs; control
characters (Cc, Cf) other than those are dropped; punctuation is every ASCII symbol
that is not a letter, digit or space, plus Unicode category P*.
"""

from __future__ import annotations

import unicodedata

import regex

CONTROL = regex.compile(r"[\x00\ufffd]|(?![\t\n\r])[\p{Cc}\p{Cf}]")
ASCII_PUNCTUATION = r"!-/:-@\[-`{-~"
WORD_OR_PUNCTUATION = regex.compile(rf"[^ \t\n\r\p{{Zs}}\p{{P}}{ASCII_PUNCTUATION}]+|[\p{{P}}{ASCII_PUNCTUATION}]")
COMBINING_MARK = regex.compile(r"\p{Mn}")


class BertPreTokenizer:
    """Text -> words, the way BERT sees them before WordPiece."""

    def __init__(self, lowercase: bool = False, strip_accents: bool | None = None) -> None:
        """`strip_accents=None` follows `lowercase`, as BERT's uncased models do."""
        self.lowercase = lowercase
        self.strip_accents = lowercase if strip_accents is None else strip_accents

    def normalize(self, text: str) -> str:
        text = CONTROL.sub("", text)
        if self.lowercase:
            text = text.lower()
        if self.strip_accents:
            text = COMBINING_MARK.sub("", unicodedata.normalize("NFD", text))
        return text

    def __call__(self, text: str) -> list[str]:
        return WORD_OR_PUNCTUATION.findall(self.normalize(text))
