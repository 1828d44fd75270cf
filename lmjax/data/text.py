"""Corpus text: bytes to checked UTF-8, text to documents, documents to train/validation.

Pure functions with no tfds or grain in sight, so the rules the builder follows (what
counts as a document, where the split falls, what happens to bad bytes) can be tested and
documented on their own.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from lmjax.errors import DataError

TRAIN_FRACTION = 0.9
BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")  # one or more lines holding only spaces or tabs
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of an invalid byte


def decode_corpus(data: bytes, source: str | Path, invalid_utf8: str,
                  counts: dict[str, int] | None = None) -> str:
    """UTF-8 text with Unix newlines and no byte-order mark.

    Invalid bytes either stop the run ("error", naming the first bad byte so it can be
    fixed) or become U+FFFD one byte each ("replace", with a warning counting them, so
    a few stray bytes in a scraped corpus do not silently vanish; `counts`, if given,
    adds them up under "invalid_utf8_bytes").
    """
    try:
        text, replaced = decode_utf8(data, invalid_utf8)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"corpus {source} is not valid UTF-8: byte offset {err.start} (line {line}) is "
            f"{data[err.start:err.start + 1]!r}; convert it to UTF-8 (e.g. with iconv) "
            "or set data.invalid_utf8=replace"
        ) from None
    if replaced:
        warnings.warn(
            f"corpus {source}: replaced {replaced} invalid UTF-8 byte(s) with U+FFFD "
            "(set data.invalid_utf8=error to fail instead)",
            stacklevel=2,
        )
    if counts is not None:
        counts["invalid_utf8_bytes"] = counts.get("invalid_utf8_bytes", 0) + replaced
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def decode_utf8(data: bytes, invalid_utf8: str) -> tuple[str, int]:
    """The text and how many invalid bytes became U+FFFD (one each); under "error" the
    first invalid byte raises UnicodeDecodeError, for the caller to say where it was."""
    if invalid_utf8 == "error":
        return data.decode("utf-8"), 0
    return _ESCAPED_BYTE.subn("\ufffd", data.decode("utf-8", "surrogateescape"))


def split_documents(text: str) -> list[str]:
    """Documents are separated by blank lines (a speech, in tiny-shakespeare).

    Leading and trailing newlines are dropped, indentation inside a document is kept.
    """
    return [doc.strip("\n") for doc in BLANK_LINES.split(text) if doc.strip()]


def train_validation_split(
    documents: list[str], train_fraction: float = TRAIN_FRACTION
) -> tuple[list[str], list[str]]:
    """nanoGPT's 90/10 character split, moved to the nearest document boundary.

    Cutting between documents keeps every document whole on one side; the boundary
    nearest the 90% character mark keeps the proportions nanoGPT's numbers assume.
    A single document has no boundary and goes to train.
    """
    if len(documents) < 2:
        return list(documents), []
    starts = [0]
    for doc in documents[:-1]:
        starts.append(starts[-1] + len(doc))
    target = train_fraction * (starts[-1] + len(documents[-1]))
    cut = min(range(1, len(documents)), key=lambda i: abs(starts[i] - target))
    return documents[:cut], documents[cut:]
