"""A Hugging Face checkpoint written as an lmjax export: what `lmjax convert hf` does.

The export directory holds `config.yaml` (an lmjax Config whose model section is the
checkpoint's architecture), `params/` (a parameters-only checkpoint that
`checkpoint.init_from` and `load_params` read) and, where the checkpoint directory has
tokenizer files lmjax can read, `tokenizer/` (which the config names as data.tokenizer_dir).
"""

from __future__ import annotations

import json
import pathlib

from lmjax import config as config_lib
from lmjax.errors import CheckpointError
from lmjax.runs.importers.hf import load
from lmjax.tokenizers import BPETokenizer, SentencePieceTokenizer, Tokenizer, WordPieceTokenizer
from lmjax.runs.params import save_params
from lmjax.runs.config_file import save_config

TOKENIZER_KIND = {"gpt": "bpe", "bert": "wordpiece", "t5": "sentencepiece"}
DEFAULT_SEQ_LEN = 128
T5_EXTRA_IDS = 100


def export(path: str | pathlib.Path, out_dir: str | pathlib.Path) -> config_lib.Config:
    """Writes the export into `out_dir`, which must not exist yet or be empty."""
    source, target = pathlib.Path(path), pathlib.Path(out_dir)
    if target.exists() and any(target.iterdir()):
        raise CheckpointError(f"{target} already exists and is not empty: give a new directory")
    model_config, params = load(source)
    tokenizer = read_tokenizer(source)
    config = config_lib.Config(
        name=target.name,
        model=model_config,
        data=config_lib.DataConfig(
            objective=config_lib.ARCH_OBJECTIVE[model_config.arch],
            seq_len=min(DEFAULT_SEQ_LEN, model_config.max_len),
            tokenizer=tokenizer.kind if tokenizer else TOKENIZER_KIND[model_config.arch],
            tokenizer_dir=str((target / "tokenizer").absolute()) if tokenizer else "",
        ),
    )
    config_lib.validate(config)
    save_params(target, params)
    if tokenizer:
        tokenizer.save(target / "tokenizer")
    save_config(target, config)
    return config


def read_tokenizer(directory: pathlib.Path) -> Tokenizer | None:
    """The checkpoint's tokenizer from BERT's vocab.txt, GPT-2's vocab.json and merges.txt or
    T5's spiece.model, if the directory has one; None otherwise."""
    options = _tokenizer_config(directory)
    if (directory / "vocab.txt").is_file():
        return WordPieceTokenizer.from_vocab_file(directory / "vocab.txt",
                                                  lowercase=bool(options.get("do_lower_case", True)))
    if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        return BPETokenizer.from_gpt2_files(directory / "vocab.json", directory / "merges.txt")
    if (directory / "spiece.model").is_file():
        return SentencePieceTokenizer.from_file(directory / "spiece.model",
                                                extra_ids=int(options.get("extra_ids", T5_EXTRA_IDS)))
    return None


def _tokenizer_config(directory: pathlib.Path) -> dict:
    path = directory / "tokenizer_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}
