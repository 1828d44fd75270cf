"""A Hugging Face `tokenizer.json` (what almost every Hub model ships) as an lmjax tokenizer.

The file is read and run by `tokenizers`, Hugging Face's own implementation, so ids are
the ones transformers' fast tokenizer gives; `tokenizer_config.json` beside it adds its
declared tokens and BOS/EOS framing (`hf_config`). lmjax's rules on top: `encode` keeps
special tokens in the text as text unless allowed (tiktoken's rule, as for every kind),
and `bos_id` is the token the tokenizer really puts before a text (Llama's `<s>` with
`add_bos_token`, BERT's `[CLS]`), None where it puts none (GPT-2), so callers that prepend
`bos_id` feed the model what transformers would.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lmjax.errors import DataError
from lmjax.tokenizers import hf_config
from lmjax.tokenizers.base import AllowedSpecial, Tokenizer

TOKENIZER_FILE = "tokenizer.json"
PROBES = ("a", "0", ".", "▁", "<0x61>")  # the first that encodes to a token shows where framing goes
# transformers' `clean_up_tokenization`, applied by its decode when the config asks (never to BPE).
CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
           (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def import_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise DataError("reading a tokenizer.json needs Hugging Face's `tokenizers`: pip install 'lmjax[hf]'") from None
    return tokenizers


class HFTokenizer(Tokenizer):
    """A `tokenizers.Tokenizer` with the options of its tokenizer_config.json applied."""

    kind = "hf"

    def __init__(self, json_text: str, config: dict, where: str | Path = TOKENIZER_FILE) -> None:
        """`json_text`: the tokenizer.json content; `config`: tokenizer_config.json's dict."""
        tokenizers = import_tokenizers()
        try:
            self.hf = tokenizers.Tokenizer.from_str(json_text)
            self._ordinary = tokenizers.Tokenizer.from_str(json_text)
        except Exception as err:  # tokenizers raises plain Exception for a file it cannot parse
            raise DataError(f"{where} cannot be read by the tokenizers library ({_first_line(err)}); "
                            "give a tokenizer.json saved by tokenizers or transformers") from None
        self.config = dict(config)
        for backend in (self.hf, self._ordinary):
            hf_config.apply_config(backend, self.config, Path(where).with_name(hf_config.CONFIG_FILE))
            backend.no_padding()
            backend.no_truncation()
        self._ordinary.encode_special_tokens = True  # specials in text stay text
        self.hf.encode_special_tokens = bool(self.config.get("split_special_tokens"))  # transformers' option
        self._special_tokens = {token.content: token_id for token_id, token
                                in self.hf.get_added_tokens_decoder().items() if token.special}
        self._vocab_size = max(self.hf.get_vocab(with_added_tokens=True).values(), default=-1) + 1
        self._named = {role: self.hf.token_to_id(token) for role, token in hf_config.named_tokens(config).items()}
        self._prefix = self._framing_prefix()

    @classmethod
    def from_file(cls, path: str | Path) -> HFTokenizer:
        """A tokenizer.json file (or a directory holding one), with the tokenizer_config.json
        beside it when there is one."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise DataError(f"tokenizer file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{path} is not UTF-8 (byte {err.start}); it is not a tokenizer.json") from None
        return cls(text, hf_config.read_config(path.with_name(hf_config.CONFIG_FILE)), path)

    # -- the interface ------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    def encode_ordinary(self, text: str) -> list[int]:
        return self._ordinary.encode(text, add_special_tokens=False).ids

    def encode(self, text: str, allowed_special: AllowedSpecial = ()) -> list[int]:
        """With every special allowed, `tokenizers` finds them itself (as transformers'
        `encode(text, add_special_tokens=False)`); a subset cuts the text around the allowed
        ones and encodes the pieces on their own."""
        if self._allows_all(allowed_special):
            return self.hf.encode(text, add_special_tokens=False).ids
        return super().encode(text, allowed_special)

    def encode_batch(self, texts: Iterable[str], allowed_special: AllowedSpecial = ()) -> list[list[int]]:
        """Batches go to `tokenizers`' multi-threaded encoder."""
        texts = list(texts)
        if not self._allowed_special_ids(allowed_special):
            return [found.ids for found in self._ordinary.encode_batch(texts, add_special_tokens=False)]
        if self._allows_all(allowed_special):
            return [found.ids for found in self.hf.encode_batch(texts, add_special_tokens=False)]
        return super().encode_batch(texts, allowed_special)

    def encode_with_special_tokens(self, text: str) -> list[int]:
        """What transformers' `tokenizer(text)["input_ids"]` gives: specials in the text
        matched, and the post-processor's BOS/EOS (or [CLS]/[SEP]) around it."""
        return self.hf.encode(text, add_special_tokens=True).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids, special tokens included, as transformers' `decode` gives it."""
        ids = [int(token_id) for token_id in ids]
        bad = next((i for i in ids if not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise DataError(f"token id {bad} is outside this tokenizer's vocabulary (size {self.vocab_size})")
        text = self.hf.decode(ids, skip_special_tokens=False)
        if self.config.get("clean_up_tokenization_spaces") and type(self.hf.model).__name__ != "BPE":
            for before, after in CLEANUP:
                text = text.replace(before, after)
        return text

    def token_to_id(self, token: str) -> int | None:
        """Id of any token of the vocabulary (special or not), or None."""
        return self.hf.token_to_id(token)

    @property
    def bos_id(self) -> int | None:
        return self._prefix

    @property
    def eos_id(self) -> int | None:
        named = self._named
        return named.get("eos_token") if named.get("eos_token") is not None else named.get("sep_token")

    @property
    def pad_id(self) -> int | None:
        return self._named.get("pad_token")

    @property
    def unk_id(self) -> int | None:
        return self._named.get("unk_token")

    # -- files -------------------------------------------------------------------

    def _save_files(self, directory: Path) -> dict:
        """tokenizer.json as loaded (transformers applies the config again on reading it)."""
        (directory / TOKENIZER_FILE).write_text(self.hf.to_str(pretty=True), encoding="utf-8")
        hf_config.write_config(directory, self.config)
        return {"tokenizer_file": TOKENIZER_FILE, "config_file": hf_config.CONFIG_FILE}

    @classmethod
    def _load_files(cls, directory: Path, meta: dict) -> HFTokenizer:
        return cls.from_file(directory / meta.get("tokenizer_file", TOKENIZER_FILE))

    def _allows_all(self, allowed_special: AllowedSpecial) -> bool:
        allowed = self._allowed_special_ids(allowed_special)
        return bool(allowed) and len(allowed) == len(self._special_tokens)

    def _framing_prefix(self) -> int | None:
        """The one token the post-processor puts before a text, if it puts exactly one."""
        for probe in PROBES:
            plain = self._ordinary.encode(probe, add_special_tokens=False).ids
            if plain:
                framed = self._ordinary.encode(probe, add_special_tokens=True).ids
                starts = [i for i in range(len(framed) - len(plain) + 1) if framed[i:i + len(plain)] == plain]
                return framed[0] if starts[:1] == [1] else None
        return None


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return re.sub(r"\s+", " ", lines[0]) if lines else type(err).__name__
