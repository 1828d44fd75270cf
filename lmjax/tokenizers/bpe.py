"""Byte-level BPE, GPT-2 style: our own trainer and encoder, GPT-2's files and ids.

Text is cut into pre-tokens by GPT-2's regular expression (contractions, letters,
numbers, other symbols, whitespace), so merges never cross those boundaries. Each
pre-token starts as its UTF-8 bytes, one token per byte, and merges are applied in the
order they were learned. Any byte string is representable, so decoding is exact; lone
surrogates in a Python string travel as their 3-byte "surrogatepass" encoding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path

import regex

from lmjax.errors import DataError
from lmjax.tokenizers import gpt2_format, to_tokenizer_json
from lmjax.tokenizers.base import Tokenizer, read_corpus_bytes, require_nonempty
from lmjax.tokenizers.bpe_trainer import Merge, learn_merges, merge_pair

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
END_OF_TEXT = "<|endoftext|>"
PAD = "<|pad|>"  # not in GPT-2's vocabulary; lmjax adds it when training for packed batches
CACHE_LIMIT = 1 << 18
NO_MERGE = 1 << 62


class BPETokenizer(Tokenizer):
    """Byte-level BPE: 256 byte tokens, ranked merges, and special tokens."""

    kind = "bpe"

    def __init__(
        self,
        token_bytes: Sequence[bytes],
        byte_ids: Sequence[int],
        merges: Sequence[Merge],
        special_tokens: dict[str, int],
        pattern: str = GPT2_PATTERN,
        eos_token: str | None = END_OF_TEXT,
    ) -> None:
        """Prefer `train`, `from_gpt2_files` or `load`; this takes already-checked tables:
        `token_bytes[id]`, `byte_ids[byte]`, and merges (left, right, result) in rank order."""
        self.token_bytes = list(token_bytes)
        self.byte_ids = list(byte_ids)
        self.merges = list(merges)
        self._special_tokens = dict(special_tokens)
        self.pattern = pattern
        self.eos_token = eos_token if eos_token in special_tokens else None
        self._ranks: dict[tuple[int, int], int] = {}
        for rank, (left, right, _) in enumerate(self.merges):
            self._ranks.setdefault((left, right), rank)
        self._regex = regex.compile(pattern)
        self._cache: dict[bytes, list[int]] = {}

    # -- building -----------------------------------------------------------------

    @classmethod
    def train(
        cls,
        files: Sequence[str | Path],
        vocab_size: int,
        special_tokens: Sequence[str] = (END_OF_TEXT,),
        pattern: str = GPT2_PATTERN,
        progress: bool | None = None,
    ) -> BPETokenizer:
        """Learn tokens until the vocabulary, special tokens included, has `vocab_size` ids.

        Ids: 0-255 are the byte values, then one id per new token in learning order, then
        the special tokens. Files are read as bytes, so they need not be UTF-8.
        """
        base_size = 256 + len(special_tokens)
        if vocab_size < base_size:
            raise DataError(
                f"vocab_size {vocab_size} is smaller than the 256 byte tokens plus {len(special_tokens)} "
                f"special tokens; ask for at least {base_size}"
            )
        corpora = [read_corpus_bytes(path) for path in files]
        require_nonempty(corpora, files)
        word_counts = count_pretokens(corpora, regex.compile(pattern))
        token_bytes = [bytes([byte]) for byte in range(256)]
        merges = learn_merges(word_counts, token_bytes, vocab_size - len(special_tokens), progress=progress)
        if len(token_bytes) + len(special_tokens) < vocab_size:
            raise DataError(
                f"the corpus only yields {len(token_bytes) - 256} merged tokens, so vocab_size can be at most "
                f"{len(token_bytes) + len(special_tokens)} (asked {vocab_size}); give more text or a smaller vocab_size"
            )
        specials = {token: len(token_bytes) + i for i, token in enumerate(special_tokens)}
        token_bytes.extend(token.encode("utf-8") for token in special_tokens)
        return cls(token_bytes, range(256), merges, specials, pattern)

    @classmethod
    def from_gpt2_files(
        cls,
        encoder_json: str | Path,
        vocab_bpe: str | Path,
        special_tokens: Collection[str] | None = None,
        pattern: str = GPT2_PATTERN,
        eos_token: str | None = END_OF_TEXT,
    ) -> BPETokenizer:
        """GPT-2's `encoder.json` + `vocab.bpe` (or any pair in that format).

        Entries of encoder.json that are neither a byte nor a merge result are the special
        tokens (GPT-2: `<|endoftext|>` = 50256) unless `special_tokens` names them.
        """
        encoder = gpt2_format.read_encoder(encoder_json)
        merge_texts = gpt2_format.read_merges(vocab_bpe)
        mismatch = f"{encoder_json} and {vocab_bpe} do not belong together"
        if sorted(encoder.values()) != list(range(len(encoder))):
            raise DataError(f"{encoder_json}: token ids must be exactly 0..{len(encoder) - 1}, each used once")
        token_bytes: list[bytes | None] = [None] * len(encoder)
        byte_ids = []
        for byte, char in gpt2_format.bytes_to_unicode().items():
            if char not in encoder:
                raise DataError(f"{encoder_json} lacks the token for byte {byte} ({char!r}); {mismatch}")
            token_bytes[encoder[char]] = bytes([byte])
        byte_ids = [encoder[gpt2_format.bytes_to_unicode()[byte]] for byte in range(256)]
        merges = []
        for number, (left, right) in enumerate(merge_texts, start=1):
            missing = [text for text in (left, right, left + right) if text not in encoder]
            if missing:
                raise DataError(
                    f"merge {number} ({left} {right}) needs {missing[0]!r}, which {encoder_json} lacks; {mismatch}"
                )
            merges.append((encoder[left], encoder[right], encoder[left + right]))
            token_bytes[encoder[left + right]] = gpt2_format.text_to_token(left + right)
        id_to_text = {token_id: text for text, token_id in encoder.items()}
        leftovers = {id_to_text[i]: i for i, token in enumerate(token_bytes) if token is None}
        if special_tokens is not None and set(leftovers) != set(special_tokens):
            stray = sorted(set(leftovers) - set(special_tokens)) or sorted(set(special_tokens) - set(leftovers))
            raise DataError(f"{stray[0]!r} is in one of the vocabulary and the special tokens but not both; {mismatch}")
        for text, token_id in leftovers.items():
            token_bytes[token_id] = text.encode("utf-8")
        return cls(token_bytes, byte_ids, merges, leftovers, pattern, eos_token)  # type: ignore[arg-type]

    # -- the interface ------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    @property
    def eos_id(self) -> int | None:
        return None if self.eos_token is None else self._special_tokens[self.eos_token]

    @property
    def pad_id(self) -> int | None:
        return self._special_tokens.get(PAD)

    def encode_ordinary(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self._regex.findall(text):
            ids.extend(self._encode_pretoken(piece.encode("utf-8", "surrogatepass")))
        return ids

    def encode_bytes(self, data: bytes) -> list[int]:
        """Encode raw bytes, valid UTF-8 or not; `decode_bytes` gives them back exactly."""
        ids: list[int] = []
        for piece in self._regex.findall(data.decode("utf-8", "surrogateescape")):
            ids.extend(self._encode_pretoken(piece.encode("utf-8", "surrogateescape")))
        return ids

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        ids = [int(token_id) for token_id in ids]
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise DataError(f"token id {bad} is outside this tokenizer's vocabulary (size {self.vocab_size})")
        return b"".join([self.token_bytes[token_id] for token_id in ids])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids; bytes that are not valid UTF-8 (a cut sequence) become U+FFFD."""
        data = self.decode_bytes(ids)
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return data.decode("utf-8", "replace")

    def _encode_pretoken(self, data: bytes) -> list[int]:
        cached = self._cache.get(data)
        if cached is None:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            cached = self._cache[data] = self.apply_merges([self.byte_ids[byte] for byte in data])
        return cached

    def apply_merges(self, ids: list[int]) -> list[int]:
        """Repeatedly merge the adjacent pair learned earliest, as GPT-2's encoder does."""
        ranks = self._ranks
        while len(ids) > 1:
            best = min(ranks.get(pair, NO_MERGE) for pair in zip(ids, ids[1:]))
            if best == NO_MERGE:
                break
            left, right, result = self.merges[best]
            ids = merge_pair(ids, (left, right), result)
        return ids

    # -- files -------------------------------------------------------------------

    def _save_files(self, directory: Path) -> dict:
        special_by_id = {token_id: token for token, token_id in self._special_tokens.items()}
        encoder = {
            special_by_id.get(token_id) or gpt2_format.token_to_text(data): token_id
            for token_id, data in enumerate(self.token_bytes)
        }
        merge_texts = [
            (gpt2_format.token_to_text(self.token_bytes[left]), gpt2_format.token_to_text(self.token_bytes[right]))
            for left, right, _ in self.merges
        ]
        encoder_file, merges_file = gpt2_format.write_files(directory, encoder, merge_texts)
        to_tokenizer_json.write_bpe(directory, self, GPT2_PATTERN)
        return {
            "encoder_file": encoder_file,
            "merges_file": merges_file,
            "special_tokens": self._special_tokens,
            "eos_token": self.eos_token,
            "pattern": self.pattern,
        }

    @classmethod
    def _load_files(cls, directory: Path, meta: dict) -> BPETokenizer:
        return cls.from_gpt2_files(
            directory / meta["encoder_file"],
            directory / meta["merges_file"],
            special_tokens=meta["special_tokens"],
            pattern=meta["pattern"],
            eos_token=meta["eos_token"],
        )


def count_pretokens(corpora: Sequence[bytes], pattern: regex.Pattern) -> dict[tuple[int, ...], int]:
    """Distinct pre-tokens of the corpus as byte tuples, with their counts."""
    counts: Counter[str] = Counter()
    for data in corpora:
        counts.update(pattern.findall(data.decode("utf-8", "surrogateescape")))
    return {tuple(piece.encode("utf-8", "surrogateescape")): count for piece, count in counts.items()}
