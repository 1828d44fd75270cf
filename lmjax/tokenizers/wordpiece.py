"""WordPiece, BERT style: our own likelihood-score trainer and greedy longest-match tokenizing.

Tokenizing does not replay merges: each word (from BERT's basic pre-tokenizer) is covered
from the left by the longest vocabulary entry that fits, the rest continuing as interior
pieces ("##..."); a word that cannot be covered, or is longer than
`max_input_chars_per_word`, becomes [UNK]. Files: BERT's `vocab.txt`, one token per line,
the line number being the id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lmjax.errors import DataError
from lmjax.tokenizers import to_tokenizer_json
from lmjax.tokenizers.base import Tokenizer, read_corpus_text, require_nonempty
from lmjax.tokenizers.bert_pretokenizer import BertPreTokenizer
from lmjax.tokenizers.wordpiece_trainer import PREFIX, base_alphabet, learn_vocabulary

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VOCAB_FILE = "vocab.txt"
CACHE_LIMIT = 1 << 18


class WordPieceTokenizer(Tokenizer):
    """A WordPiece vocabulary with BERT's special tokens and pre-tokenization.

    [CLS] doubles as `bos_id` and [SEP] as `eos_id`, the document separator BERT uses.
    """

    kind = "wordpiece"

    def __init__(
        self,
        vocab: Sequence[str],
        lowercase: bool = False,
        strip_accents: bool | None = None,
        special_tokens: Sequence[str] = BERT_SPECIAL_TOKENS,
        max_input_chars_per_word: int = 100,
    ) -> None:
        self.vocab = list(vocab)
        self.token_ids = {token: token_id for token_id, token in enumerate(self.vocab)}
        if len(self.token_ids) != len(self.vocab):
            duplicate = next(token for token in self.vocab if self.vocab.count(token) > 1)
            raise DataError(f"the WordPiece vocabulary lists {duplicate!r} twice; each token must appear once")
        missing = [token for token in special_tokens if token not in self.token_ids]
        if missing:
            raise DataError(
                f"special token {missing[0]!r} is not in the vocabulary; add it or drop it from special_tokens"
            )
        self._special_tokens = {token: self.token_ids[token] for token in special_tokens}
        self.pretokenizer = BertPreTokenizer(lowercase, strip_accents)
        self.max_input_chars_per_word = max_input_chars_per_word
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(
        cls,
        files: Sequence[str | Path],
        vocab_size: int,
        lowercase: bool = False,
        strip_accents: bool | None = None,
        special_tokens: Sequence[str] = BERT_SPECIAL_TOKENS,
        progress: bool | None = None,
    ) -> WordPieceTokenizer:
        """Learn a vocabulary of exactly `vocab_size` tokens, the special tokens first
        (ids 0..4 for BERT's), then the base alphabet, then merged tokens in learning order."""
        texts = [read_corpus_text(path) for path in files]
        require_nonempty(texts, files)
        pretokenizer = BertPreTokenizer(lowercase, strip_accents)
        word_counts: Counter[str] = Counter()
        for text in texts:
            word_counts.update(pretokenizer(text))
        vocab = list(special_tokens)
        vocab += [token for token in base_alphabet(word_counts) if token not in vocab]
        if vocab_size < len(vocab):
            raise DataError(
                f"vocab_size {vocab_size} is smaller than the {len(vocab) - len(special_tokens)} one-character tokens "
                f"of the corpus (each with and without ##) plus {len(special_tokens)} special tokens; "
                f"ask for at least {len(vocab)}"
            )
        learn_vocabulary(word_counts, vocab, vocab_size, progress=progress)
        if len(vocab) < vocab_size:
            raise DataError(
                f"the corpus only supports a vocabulary of {len(vocab)} tokens (asked {vocab_size}); "
                "give more text or a smaller vocab_size"
            )
        return cls(vocab, lowercase, strip_accents, special_tokens)

    @classmethod
    def from_vocab_file(cls, vocab_txt: str | Path, **options) -> WordPieceTokenizer:
        """A BERT `vocab.txt` (one token per line); `options` as for the constructor."""
        vocab_txt = Path(vocab_txt)
        if not vocab_txt.is_file():
            raise DataError(f"vocabulary file {vocab_txt} does not exist")
        text = read_corpus_text(vocab_txt)
        return cls(text.removesuffix("\n").split("\n"), **options)

    # -- the interface ------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special_tokens)

    @property
    def unk_id(self) -> int | None:
        return self._special_tokens.get("[UNK]")

    @property
    def pad_id(self) -> int | None:
        return self._special_tokens.get("[PAD]")

    @property
    def bos_id(self) -> int | None:
        return self._special_tokens.get("[CLS]")

    @property
    def eos_id(self) -> int | None:
        return self._special_tokens.get("[SEP]")

    @property
    def cls_id(self) -> int | None:
        return self._special_tokens.get("[CLS]")

    @property
    def sep_id(self) -> int | None:
        return self._special_tokens.get("[SEP]")

    @property
    def mask_id(self) -> int | None:
        return self._special_tokens.get("[MASK]")

    def encode_ordinary(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in self.pretokenizer(text):
            cached = self._cache.get(word)
            if cached is None:
                if len(self._cache) >= CACHE_LIMIT:
                    self._cache.clear()
                cached = self._cache[word] = self.tokenize_word(word)
            ids.extend(cached)
        return ids

    def tokenize_word(self, word: str) -> list[int]:
        """Greedy longest match from the left; [UNK] for the whole word if it gets stuck."""
        if len(word) > self.max_input_chars_per_word:
            return self._unknown(word)
        ids: list[int] = []
        start = 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else PREFIX + word[start:end]
                token_id = self.token_ids.get(piece)
                if token_id is not None:
                    ids.append(token_id)
                    start = end
                    break
            else:
                return self._unknown(word)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Words joined by spaces, interior pieces glued on (BERT's detokenization)."""
        tokens = []
        for token_id in ids:
            token_id = int(token_id)
            if not 0 <= token_id < self.vocab_size:
                raise DataError(f"token id {token_id} is outside this tokenizer's vocabulary (size {self.vocab_size})")
            tokens.append(self.vocab[token_id])
        return " ".join(tokens).replace(" " + PREFIX, "")

    def _unknown(self, word: str) -> list[int]:
        if self.unk_id is None:
            raise DataError(f"cannot tokenize {word[:40]!r} and this WordPiece vocabulary has no [UNK] token")
        return [self.unk_id]

    # -- files -------------------------------------------------------------------

    def _save_files(self, directory: Path) -> dict:
        (directory / VOCAB_FILE).write_text("\n".join(self.vocab) + "\n", encoding="utf-8")
        to_tokenizer_json.write_wordpiece(directory, self)
        return {
            "vocab_file": VOCAB_FILE,
            "lowercase": self.pretokenizer.lowercase,
            "strip_accents": self.pretokenizer.strip_accents,
            "special_tokens": list(self._special_tokens),
            "max_input_chars_per_word": self.max_input_chars_per_word,
        }

    @classmethod
    def _load_files(cls, directory: Path, meta: dict) -> WordPieceTokenizer:
        return cls.from_vocab_file(
            directory / meta["vocab_file"],
            lowercase=meta["lowercase"],
            strip_accents=meta["strip_accents"],
            special_tokens=meta["special_tokens"],
            max_input_chars_per_word=meta["max_input_chars_per_word"],
        )
