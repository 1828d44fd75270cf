"""A run's tokenizer as files transformers' AutoTokenizer opens and encodes as lmjax does.

Written from the files lmjax itself saves, with a `tokenizer_config.json` naming the class
and the special tokens:
- byte-level BPE, WordPiece and `hf` tokenizers: the Hugging Face `tokenizer.json` their
  `save` writes (any BPE pre-tokenizer pattern, as a `Split`), as PreTrainedTokenizerFast
  (an `hf` tokenizer keeps its own config). No vocab.json/merges.txt/vocab.txt beside it:
  `from-hf` reads those first, and re-importing the export should give the `hf` kind;
- without the `tokenizers` package (no tokenizer.json): BPE as `vocab.json` + `merges.txt`
  for GPT2Tokenizer (GPT-2's pattern only), WordPiece as `vocab.txt` for BertTokenizer
  (lmjax's BERT pre-tokenizer does not split Chinese characters apart, so neither does it);
- SentencePiece: `tokenizer.model` as TokenizersBackend, which follows the model's own
  normalizer settings (T5Tokenizer and LlamaTokenizer would add a prefix space lmjax's models
  are not trained with); T5 sentinels are listed as added tokens.
lmjax's own description file (`lmjax_tokenizer.json`, named `tokenizer.json` before hf-tok's
rename) is never copied: only the files it names, and Hugging Face's tokenizer.json.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import tempfile

from lmjax.tokenizers import (BPETokenizer, HFTokenizer, SentencePieceTokenizer, Tokenizer,
                              WordPieceTokenizer)
from lmjax.tokenizers.base import HF_FILE, META_FILE
from lmjax.tokenizers.bpe import GPT2_PATTERN
from lmjax.tokenizers.hf_config import read_config

CONFIG_FILE = "tokenizer_config.json"


def unsupported(tokenizer: Tokenizer | None) -> str | None:
    """Why the tokenizer cannot be written for transformers, or None."""
    if tokenizer is None:
        return "the run has no tokenizer"
    if isinstance(tokenizer, BPETokenizer) and tokenizer.pattern != GPT2_PATTERN and not _has_tokenizers():
        return ("its BPE pre-tokenizer pattern is not GPT-2's, the only one GPT2Tokenizer has; "
                "install Hugging Face's tokenizers (pip install 'lmjax[hf]') to write a tokenizer.json")
    if not isinstance(tokenizer, (BPETokenizer, WordPieceTokenizer, SentencePieceTokenizer, HFTokenizer)):
        return f"lmjax has no transformers class for a {tokenizer.kind!r} tokenizer"
    return None


def write_tokenizer(tokenizer: Tokenizer, directory: pathlib.Path, max_len: int) -> list[str]:
    """Writes the files into `directory` (checked with `unsupported` first); their names."""
    with tempfile.TemporaryDirectory(prefix="lmjax-tokenizer-") as saved:
        saved = pathlib.Path(saved)
        tokenizer.save(saved)
        meta = json.loads((saved / META_FILE).read_text(encoding="utf-8"))
        if (saved / HF_FILE).is_file():  # Hugging Face's format, written by this save
            renames, options = {HF_FILE: HF_FILE}, read_config(saved / CONFIG_FILE)
        else:
            renames, options = _files_and_options(tokenizer, meta)
        for source, target in renames.items():
            shutil.copyfile(saved / source, directory / target)
    config = {"model_max_length": max_len, "added_tokens_decoder": _added(tokenizer),
              "clean_up_tokenization_spaces": False, **options}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    return [*renames.values(), CONFIG_FILE]


def _files_and_options(tokenizer: Tokenizer, meta: dict) -> tuple[dict[str, str], dict]:
    if isinstance(tokenizer, BPETokenizer):
        eos = tokenizer.eos_token
        pad = next((token for token, i in tokenizer.special_tokens.items() if i == tokenizer.pad_id), None)
        return ({meta["encoder_file"]: "vocab.json", meta["merges_file"]: "merges.txt"},
                {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "bos_token": eos,
                 "eos_token": eos, "unk_token": eos, "pad_token": pad})
    if isinstance(tokenizer, WordPieceTokenizer):
        names = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                 "cls_token": "[CLS]", "mask_token": "[MASK]"}
        return ({meta["vocab_file"]: "vocab.txt"},
                {"tokenizer_class": "BertTokenizer", "do_lower_case": tokenizer.pretokenizer.lowercase,
                 "strip_accents": tokenizer.pretokenizer.strip_accents,
                 "tokenize_chinese_chars": False,
                 **{key: token if token in tokenizer.special_tokens else None
                    for key, token in names.items()}})
    processor = tokenizer.processor
    pieces = {key: _piece(processor, getattr(processor, key + "_id")())
              for key in ("bos", "eos", "unk", "pad")}
    return ({meta["model_file"]: "tokenizer.model"},
            {"tokenizer_class": "TokenizersBackend", "add_bos_token": False, "add_eos_token": False,
             **{key + "_token": piece for key, piece in pieces.items()}})


def _piece(processor, token_id: int) -> str | None:
    return processor.id_to_piece(token_id) if token_id >= 0 else None


def _added(tokenizer: Tokenizer) -> dict[str, dict]:
    """The special tokens by id, as transformers lists them (matched whole, never split)."""
    return {str(token_id): {"content": token, "special": True, "normalized": False,
                            "lstrip": False, "rstrip": False, "single_word": False}
            for token, token_id in sorted(tokenizer.special_tokens.items(), key=lambda item: item[1])}


def _has_tokenizers() -> bool:
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True
