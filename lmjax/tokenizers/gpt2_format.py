"""GPT-2's vocabulary files: `encoder.json` (token -> id) and `vocab.bpe` (merges in order).

GPT-2 writes each byte-level token as printable characters: the byte values that are
printable stand for themselves and the others are moved to code points from 256 up, so
that a token never contains whitespace or control characters (`bytes_to_unicode`).
lmjax saves its own BPE tokenizers in the same two files, so HF and tiktoken-style
tools read them too.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from lmjax.errors import DataError

MERGES_HEADER = "#version: 0.2"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {char: byte for byte, char in bytes_to_unicode().items()}


def token_to_text(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[byte] for byte in token)


def text_to_token(text: str) -> bytes | None:
    """The bytes a GPT-2 token string stands for, or None if it is not one (a special token)."""
    table = unicode_to_bytes()
    try:
        return bytes(table[char] for char in text)
    except KeyError:
        return None


def read_encoder(path: str | Path) -> dict[str, int]:
    path = Path(path)
    try:
        encoder = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"vocabulary file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not a JSON vocabulary ({err})") from None
    if not isinstance(encoder, dict) or not all(isinstance(i, int) for i in encoder.values()):
        raise DataError(f"{path} must map token strings to integer ids, like GPT-2's encoder.json")
    return encoder


def read_merges(path: str | Path) -> list[tuple[str, str]]:
    """Merge lines "left right" in learning order; the '#version' header is optional."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise DataError(f"merges file {path} does not exist") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 at byte {err.start}; it is not a GPT-2 vocab.bpe") from None
    merges = []
    for number, line in enumerate(lines, start=1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise DataError(f"{path} line {number} is {line[:40]!r}, not two tokens separated by one space")
        merges.append((parts[0], parts[1]))
    return merges


def write_files(directory: Path, encoder: dict[str, int], merges: list[tuple[str, str]]) -> tuple[str, str]:
    """Write encoder.json and vocab.bpe into `directory`; returns their file names."""
    (directory / "encoder.json").write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")
    lines = [MERGES_HEADER, *(f"{left} {right}" for left, right in merges)]
    (directory / "vocab.bpe").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "encoder.json", "vocab.bpe"
