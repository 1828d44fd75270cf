"""Quality signals computed from a document's text, usable in a source's filters like columns
(`doc.words >= 50`): web crawls such as FineWeb-2 ship no length or quality column.

The signals are those of the Gopher quality and repetition filters (Rae et al. 2021, "Scaling
Language Models: Methods, Analysis & Insights from Training Gopher", appendix A, table A1)
and FineWeb's quality filter, as datatrove implements them (GopherQualityFilter,
GopherRepetitionFilter, FineWebQualityFilter); docs/data.md gives each definition and the
thresholds those papers use. Words are whitespace-separated (the papers use a word tokenizer:
their counts differ where punctuation stands apart), so the signals mean the same in every
language that separates words with spaces. Each signal is computed only when a filter names
it, once per document read.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable

PREFIX = "doc."
# FineWeb's line-ending test: terminal punctuation, closing quotes included.
END_PUNCTUATION = (".", "!", "?", '"', "'", "\u2026", "\u201d", "\u00bb", "\u3002", "\uff01", "\uff1f")
_LINE_BREAKS = re.compile(r"\n+")


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def _bare_words(text: str) -> list[str]:
    """Words with punctuation at either end removed; words of punctuation alone dropped."""
    stripped = ("".join(_strip_punctuation(word)) for word in text.split())
    return [word for word in stripped if word]


def _strip_punctuation(word: str) -> str:
    start, end = 0, len(word)
    while start < end and _is_punctuation(word[start]):
        start += 1
    while end > start and _is_punctuation(word[end - 1]):
        end -= 1
    return word[start:end]


def chars(text: str) -> int:
    """Unicode code points, newlines included."""
    return len(text)


def words(text: str) -> int:
    """Whitespace-separated words (Gopher keeps documents of 50 to 100,000)."""
    return len(text.split())


def mean_word_length(text: str) -> float:
    """Mean characters per word, punctuation at word ends not counted and words of only
    punctuation left out, as datatrove's non-symbol words (Gopher keeps 3 to 10); 0 if none."""
    bare = _bare_words(text)
    return sum(map(len, bare)) / len(bare) if bare else 0.0


def line_punct_ratio(text: str) -> float:
    """Fraction of the non-blank lines that end in terminal punctuation (FineWeb drops
    documents under 0.12); 0 for a blank document."""
    lines = [line for line in text.split("\n") if line.strip()]
    return sum(line.endswith(END_PUNCTUATION) for line in lines) / len(lines) if lines else 0.0


def _duplicates(lines: Iterable[str]) -> tuple[int, int, int]:
    """(lines, lines equal to an earlier one, characters in those), as Gopher counts them."""
    seen, total, repeated, repeated_chars = set(), 0, 0, 0
    for line in lines:
        total += 1
        if line in seen:
            repeated, repeated_chars = repeated + 1, repeated_chars + len(line)
        else:
            seen.add(line)
    return total, repeated, repeated_chars


def duplicate_line_fraction(text: str) -> float:
    """Fraction of lines (split at runs of newlines) equal to an earlier line of the document
    (Gopher drops documents over 0.30); 0 for an empty document."""
    total, repeated, _ = _duplicates(_LINE_BREAKS.split(text))
    return repeated / total if total else 0.0


def duplicate_line_char_fraction(text: str) -> float:
    """Characters in lines equal to an earlier line, over the document's characters (Gopher
    drops documents over 0.20); 0 for an empty document."""
    _, _, repeated_chars = _duplicates(_LINE_BREAKS.split(text))
    return repeated_chars / len(text) if text else 0.0


SIGNALS: dict[str, Callable[[str], float]] = {
    PREFIX + function.__name__: function
    for function in (chars, words, mean_word_length, line_punct_ratio, duplicate_line_fraction,
                     duplicate_line_char_fraction)
}


def compute(text, names: Iterable[str]) -> dict[str, float | None]:
    """The named signals of `text`; None (which no filter passes) when it is not a string."""
    return {name: SIGNALS[name](text) if isinstance(text, str) else None for name in names}
