"""The lmjax Config of an imported model: its architecture plus the settings a run needs to
train or evaluate it (objective, a sequence length, the tokenizer), as `lmjax convert` writes
it and `open_run` returns it for a checkpoint of another library."""

from __future__ import annotations

from lmjax import config as config_lib
from lmjax.tokenizers import Tokenizer

TOKENIZER_KIND = {"gpt": "bpe", "bert": "wordpiece", "t5": "sentencepiece"}
DEFAULT_SEQ_LEN = 128


def import_config(
    model_config: config_lib.ModelConfig, name: str, tokenizer: Tokenizer | None = None,
    tokenizer_dir: str = "",
) -> config_lib.Config:
    """A validated Config around `model_config`; the tokenizer's kind where one came with it."""
    config = config_lib.Config(
        name=name,
        model=model_config,
        data=config_lib.DataConfig(
            objective=config_lib.ARCH_OBJECTIVE[model_config.arch],
            seq_len=min(DEFAULT_SEQ_LEN, model_config.max_len),
            tokenizer=_trainable_kind(tokenizer, model_config.arch),
            tokenizer_dir=tokenizer_dir,
        ),
    )
    config_lib.validate(config)
    return config


def _trainable_kind(tokenizer: Tokenizer | None, arch: str) -> str:
    """data.tokenizer names a kind lmjax trains: the tokenizer's own, else the architecture's
    usual one (a Hugging Face tokenizer.json is read, never trained, by lmjax)."""
    if tokenizer is not None and tokenizer.kind in config_lib.TOKENIZERS:
        return tokenizer.kind
    return TOKENIZER_KIND[arch]
