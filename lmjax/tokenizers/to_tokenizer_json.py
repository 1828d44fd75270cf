"""lmjax's BPE and WordPiece tokenizers written as Hugging Face `tokenizer.json` files too.

Both kinds are exactly expressible with `tokenizers`' own parts, so a saved run's
tokenizer opens in transformers (`PreTrainedTokenizerFast(tokenizer_file=...)` or
`AutoTokenizer`) with the ids lmjax gives:
- BPE: a byte-level `models.BPE` over GPT-2's printable token strings with the merges in
  rank order, GPT-2's regular expression (or lmjax's own `pattern`, as a `Split`) and
  the `ByteLevel` decoder; special tokens are special added tokens at their ids.
- WordPiece: `models.WordPiece` on the vocabulary, `BertNormalizer` without Chinese
  character splitting (lmjax's pre-tokenizer has none) and `BertPreTokenizer`, the
  WordPiece decoder without clean-up, and `[CLS] $A [SEP]` framing.
SentencePiece models are kept as their `.model` only: transformers' converters assume
the normalizer and dummy prefix of Llama's or T5's models, not the identity settings
lmjax trains with, so a converted file would not give the same ids.
Without the `tokenizers` package (the `hf` extra) nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmjax.tokenizers import gpt2_format, hf_config
from lmjax.tokenizers.base import Tokenizer  # not bpe/wordpiece: they import this module

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def write_bpe(directory: Path, tokenizer: Tokenizer, gpt2_pattern: str) -> list[str]:
    """tokenizer.json and tokenizer_config.json for a byte-level `BPETokenizer`; the files written."""
    hf = _tokenizers()
    if hf is None:
        return []
    special_by_id = {token_id: token for token, token_id in tokenizer.special_tokens.items()}
    vocab = {special_by_id.get(i) or gpt2_format.token_to_text(data): i for i, data in enumerate(tokenizer.token_bytes)}
    merges = [(gpt2_format.token_to_text(tokenizer.token_bytes[left]),
               gpt2_format.token_to_text(tokenizer.token_bytes[right])) for left, right, _ in tokenizer.merges]
    built = hf.Tokenizer(hf.models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    if tokenizer.pattern == gpt2_pattern:
        built.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        built.pre_tokenizer = hf.pre_tokenizers.Sequence([
            hf.pre_tokenizers.Split(hf.Regex(tokenizer.pattern), behavior="isolated"),
            hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    built.decoder = hf.decoders.ByteLevel()
    built.post_processor = hf.processors.ByteLevel(trim_offsets=False)
    eos = tokenizer.eos_token
    config = {"bos_token": eos, "eos_token": eos,
              "pad_token": next((t for t, i in tokenizer.special_tokens.items() if i == tokenizer.pad_id), None)}
    return _write(directory, built, _specials(hf, special_by_id), config)


def write_wordpiece(directory: Path, tokenizer: Tokenizer) -> list[str]:
    """tokenizer.json and tokenizer_config.json for a `WordPieceTokenizer`; the files written."""
    hf = _tokenizers()
    if hf is None:
        return []
    specials = tokenizer.special_tokens
    unk = "[UNK]" if "[UNK]" in specials else None
    built = hf.Tokenizer(hf.models.WordPiece(
        {token: i for i, token in enumerate(tokenizer.vocab)}, unk_token=unk or "[UNK]",
        max_input_chars_per_word=tokenizer.max_input_chars_per_word))
    pre = tokenizer.pretokenizer
    built.normalizer = hf.normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=False, strip_accents=pre.strip_accents, lowercase=pre.lowercase)
    built.pre_tokenizer = hf.pre_tokenizers.BertPreTokenizer()
    built.decoder = hf.decoders.WordPiece(prefix="##", cleanup=False)
    if "[CLS]" in specials and "[SEP]" in specials:
        built.post_processor = hf.processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", specials["[CLS]"]), ("[SEP]", specials["[SEP]"])])
    roles = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
             "mask_token": "[MASK]"}
    config = {role: token if token in specials else None for role, token in roles.items()}
    config["do_lower_case"] = pre.lowercase
    special_by_id = {token_id: token for token, token_id in specials.items()}
    return _write(directory, built, _specials(hf, special_by_id), config)


def _specials(hf: Any, special_by_id: dict[int, str]) -> list[Any]:
    return [hf.AddedToken(token, special=True, normalized=False) for _, token in sorted(special_by_id.items())]


def _write(directory: Path, built: Any, specials: list[Any], config: dict) -> list[str]:
    built.add_special_tokens(specials)
    built.save(str(directory / TOKENIZER_FILE), pretty=True)
    config = {"tokenizer_class": TOKENIZER_CLASS, "clean_up_tokenization_spaces": False,
              **{key: value for key, value in config.items() if value is not None}}
    hf_config.write_config(directory, config)
    return [TOKENIZER_FILE, hf_config.CONFIG_FILE]


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        return None
    return tokenizers
