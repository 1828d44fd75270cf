"""What a Hugging Face `tokenizer_config.json` changes in the `tokenizer.json` beside it.

transformers does not take tokenizer.json alone: on loading it adds the tokens the config
declares (`added_tokens_decoder`, the named special tokens such as `bos_token`, and the
extra special tokens), in that order (transformers 5, `TokenizersBackend.__init__`).
BOS/EOS framing is the tokenizer.json's post-processor, as in transformers 5, which drops
the config's `add_bos_token`/`add_eos_token` whenever a tokenizer.json is there. Only a
file without a post-processor (hand-built, or trained with `tokenizers` and saved bare)
takes them from the config, `[BOS] $A [EOS]` as asked, as transformers 4 did: transformers
5 would add neither there, silently dropping the BOS a Llama-style config asks for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmjax.errors import DataError

CONFIG_FILE = "tokenizer_config.json"
NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
EXTRA_KEYS = ("extra_special_tokens", "additional_special_tokens")  # transformers 5 name, then 4's
ADDED_TOKEN_FIELDS = ("single_word", "lstrip", "rstrip", "normalized", "special")


def read_config(path: Path) -> dict:
    """tokenizer_config.json as a dict ({} when the file does not exist)."""
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); fix or delete it (tokenizer.json alone also loads)"
                        ) from None
    if not isinstance(config, dict):
        raise DataError(f"{path} must hold a JSON object of tokenizer options, not {type(config).__name__}")
    return config


def token_content(value: Any) -> str | None:
    """A token as the config writes it: a string, or an AddedToken dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def named_tokens(config: dict) -> dict[str, str]:
    """Role ("bos_token", ...) -> token string, for the roles the config sets."""
    named = {role: token_content(config.get(role)) for role in NAMED_TOKENS}
    return {role: token for role, token in named.items() if token is not None}


def apply_config(hf: Any, config: dict, where: Path) -> None:
    """Add the config's tokens to `hf`; without a post-processor, frame as the config says."""
    from tokenizers import processors

    _add_declared_tokens(hf, config, where)
    if hf.post_processor is None:
        named = named_tokens(config)
        bos = named.get("bos_token") if config.get("add_bos_token") else None
        eos = named.get("eos_token") if config.get("add_eos_token") else None
        single = " ".join([*([f"{bos}:0"] if bos else []), "$A:0", *([f"{eos}:0"] if eos else [])])
        pair = " ".join([single, *([f"{bos}:1"] if bos else []), "$B:1", *([f"{eos}:1"] if eos else [])])
        specials = [(token, hf.token_to_id(token)) for token in (bos, eos) if token]
        hf.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)


def _add_declared_tokens(hf: Any, config: dict, where: Path) -> None:
    """`added_tokens_decoder` entries missing from tokenizer.json, then the named and extra
    special tokens that are not added tokens yet; each declared id must come out as declared."""
    from tokenizers import AddedToken

    declared = _added_tokens_decoder(config, where)
    present = {token.content for token in hf.get_added_tokens_decoder().values()}
    to_add = [AddedToken(**fields) for _, fields in sorted(declared.items()) if fields["content"] not in present]
    wanted = {token.content for token in to_add} | present
    for token in [*named_tokens(config).values(), *_extra_special_tokens(config)]:
        if token not in wanted:
            to_add.append(AddedToken(token, special=True))
            wanted.add(token)
    if to_add:
        hf.add_tokens(to_add)
    for token_id, fields in declared.items():
        if hf.token_to_id(fields["content"]) != token_id:
            raise DataError(
                f"{where} declares {fields['content']!r} as id {token_id} but tokenizer.json gives it "
                f"{hf.token_to_id(fields['content'])}; the two files do not belong together"
            )


def _added_tokens_decoder(config: dict, where: Path) -> dict[int, dict]:
    """id -> AddedToken fields of the config's `added_tokens_decoder`."""
    declared = {}
    for key, value in (config.get("added_tokens_decoder") or {}).items():
        content = token_content(value)
        if not str(key).isdigit() or content is None:
            raise DataError(f"{where}: added_tokens_decoder entry {key!r} is not an id with a token's \"content\"")
        fields = {name: bool(value[name]) for name in ADDED_TOKEN_FIELDS if isinstance(value, dict) and name in value}
        declared[int(key)] = {"content": content, **fields}
    return declared


def _extra_special_tokens(config: dict) -> list[str]:
    """transformers 5's `extra_special_tokens` (a list, or a dict of named ones) or 4's
    `additional_special_tokens`."""
    for key in EXTRA_KEYS:
        value = config.get(key)
        if value:
            values = value.values() if isinstance(value, dict) else value
            return [token for token in map(token_content, values) if token is not None]
    return []


def write_config(directory: Path, config: dict) -> None:
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
