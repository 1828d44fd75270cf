"""The one interface every lmjax tokenizer implements, and the parts they share.

Models and the data pipeline only ever see `Tokenizer`: text to ids, ids to text, the
special-token ids they need (end of document, padding, masking, T5 sentinels) and a
directory in a plain format (JSON, text, a SentencePiece `.model`) that a run directory
keeps so it can always rebuild its tokenizer. Never pickle. The lmjax description of a
saved tokenizer is `lmjax_tokenizer.json`, so that `tokenizer.json` can be Hugging Face's
(written beside lmjax's own files where the kind allows, or the only file of an `hf` one);
directories saved before keep their description in `tokenizer.json` and still load.
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar, Literal

from lmjax.errors import DataError

META_FILE = "lmjax_tokenizer.json"
HF_FILE = "tokenizer.json"  # Hugging Face's format; lmjax's description before META_FILE
FORMAT_VERSION = 1

AllowedSpecial = Collection[str] | Literal["all"]


class Tokenizer(abc.ABC):
    """Text <-> token ids, plus the special tokens the models rely on."""

    kind: ClassVar[str]

    # -- what each family provides -------------------------------------------------

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included: the size of the embedding table."""

    @property
    @abc.abstractmethod
    def special_tokens(self) -> dict[str, int]:
        """Special token string -> id; these are never produced from ordinary text."""

    @abc.abstractmethod
    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text in which nothing is treated as a special token."""

    @abc.abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Turn ids back into text; special tokens come back as their strings."""

    @abc.abstractmethod
    def _save_files(self, directory: Path) -> dict:
        """Write the vocabulary files; return the extra fields for the description file."""

    @classmethod
    @abc.abstractmethod
    def _load_files(cls, directory: Path, meta: dict) -> Tokenizer:
        """Rebuild from the files `_save_files` wrote and the description's fields."""

    # -- shared behaviour ----------------------------------------------------------

    def encode(self, text: str, allowed_special: AllowedSpecial = ()) -> list[int]:
        """Encode text; special-token strings become their ids only where allowed.

        Keeping specials off by default means a corpus that happens to contain
        "<|endoftext|>" cannot forge document boundaries (tiktoken's rule).
        """
        allowed = self._allowed_special_ids(allowed_special)
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for chunk, special_id in split_on_specials(text, allowed):
            if special_id is None:
                ids.extend(self.encode_ordinary(chunk))
            else:
                ids.append(special_id)
        return ids

    def encode_batch(self, texts: Iterable[str], allowed_special: AllowedSpecial = ()) -> list[list[int]]:
        return [self.encode(text, allowed_special) for text in texts]

    def decode_batch(self, batch: Iterable[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def token_to_id(self, token: str) -> int | None:
        """Id of a special token, or None when this tokenizer has no such token."""
        return self.special_tokens.get(token)

    @property
    def bos_id(self) -> int | None:
        return None

    @property
    def eos_id(self) -> int | None:
        return None

    @property
    def pad_id(self) -> int | None:
        return None

    @property
    def unk_id(self) -> int | None:
        return None

    def sentinel_ids(self, n: int) -> list[int]:
        """Ids of T5's `<extra_id_0>` ... `<extra_id_{n-1}>` for span corruption."""
        ids = [self.token_to_id(f"<extra_id_{i}>") for i in range(n)]
        if None in ids:
            raise DataError(
                f"this {self.kind} tokenizer has {ids.index(None)} T5 sentinels but {n} were asked for; "
                f"train a SentencePiece tokenizer with extra_ids>={n}"
            )
        return ids  # type: ignore[return-value]

    def save(self, directory: str | Path) -> Path:
        """Write the tokenizer to `directory` (created if needed) in a plain format."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"kind": self.kind, "format_version": FORMAT_VERSION, "vocab_size": self.vocab_size}
        meta.update(self._save_files(directory))
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """Rebuild a tokenizer of this family from a directory written by `save`."""
        directory = Path(directory)
        meta = read_meta(directory)
        if meta["kind"] != cls.kind:
            raise DataError(
                f"{directory} holds a {meta['kind']!r} tokenizer, not {cls.kind!r}; "
                "use lmjax.tokenizers.load(dir), which picks the right kind"
            )
        return cls._load_files(directory, meta)

    def _allowed_special_ids(self, allowed_special: AllowedSpecial) -> dict[str, int]:
        if allowed_special == "all":
            return dict(self.special_tokens)
        if isinstance(allowed_special, str):
            raise DataError(f"allowed_special must be 'all' or a collection of strings, not {allowed_special!r}")
        unknown = sorted(set(allowed_special) - set(self.special_tokens))
        if unknown:
            raise DataError(
                f"{unknown[0]!r} is not a special token of this {self.kind} tokenizer; "
                f"its special tokens are {sorted(self.special_tokens)}"
            )
        return {token: self.special_tokens[token] for token in allowed_special}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def split_on_specials(text: str, specials: dict[str, int]) -> Iterator[tuple[str, int | None]]:
    """Cut text around special-token strings: yields (ordinary chunk, None) or (token, id).

    Longer specials are tried first so that one that contains another wins.
    """
    pattern = re.compile("|".join(re.escape(token) for token in sorted(specials, key=len, reverse=True)))
    start = 0
    for match in pattern.finditer(text):
        if match.start() > start:
            yield text[start : match.start()], None
        yield match.group(), specials[match.group()]
        start = match.end()
    if start < len(text):
        yield text[start:], None


def read_meta(directory: Path) -> dict:
    """The description of a saved tokenizer, or a one-line error saying what is wrong.

    A directory with only Hugging Face's tokenizer.json is described as the `hf` kind."""
    if not directory.is_dir():
        raise DataError(f"tokenizer directory {directory} does not exist; train one with `lmjax tokenizer train`")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        meta_path = directory / HF_FILE
    if not meta_path.is_file():
        raise DataError(
            f"{directory} is not an lmjax tokenizer directory (no {META_FILE} nor {HF_FILE}); "
            "point at a directory written by Tokenizer.save or `lmjax tokenizer train`, or one with a tokenizer.json"
        )
    meta = _read_json(meta_path)
    if meta_path.name == HF_FILE and isinstance(meta, dict) and "kind" not in meta:
        return {"kind": "hf", "format_version": FORMAT_VERSION, "tokenizer_file": HF_FILE}
    if not isinstance(meta, dict) or "kind" not in meta:
        raise DataError(
            f"{meta_path} is not an lmjax tokenizer description (no 'kind' field); "
            "train one with `lmjax tokenizer train` or rebuild it with Tokenizer.save"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{meta_path} has format_version {meta.get('format_version')!r}, this lmjax reads {FORMAT_VERSION}; "
            "re-save the tokenizer with this version"
        )
    return meta


def is_saved(directory: Path) -> bool:
    """Whether `directory` holds a saved tokenizer (either description file)."""
    return (directory / META_FILE).is_file() or (directory / HF_FILE).is_file()


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); re-save the tokenizer") from None


def read_corpus_text(path: str | Path) -> str:
    """Text of a training file; non-UTF-8 bytes are reported with their position."""
    return decode_utf8(read_corpus_bytes(path), str(path))


def decode_utf8(data: bytes, source: str) -> str:
    """`data` as text; DataError naming `source` and the first offending byte otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{source} is not UTF-8: byte {err.start} (line {line}) is {data[err.start:err.start + 1]!r}; "
            "convert the file to UTF-8 (e.g. with iconv)"
        ) from None


def read_corpus_bytes(path: str | Path) -> bytes:
    path = Path(path)
    if path.is_dir():
        raise DataError(f"training file {path} is a directory; give the text files in it, e.g. {path}/*.txt")
    if not path.is_file():
        raise DataError(f"training file {path} does not exist")
    return path.read_bytes()


def require_nonempty(texts: Sequence[str | bytes], files: Sequence[str | Path]) -> None:
    if not files:
        raise DataError("no training files were given; pass at least one text file")
    if not any(text.strip() for text in texts):
        raise DataError(f"the training corpus ({', '.join(map(str, files))}) is empty; give files that contain text")
