"""Training objectives: batch -> model inputs, targets and loss; chosen by `data.objective`.

`objective_for(config, tokenizer)` is what the trainer uses: it takes the special ids an
objective needs ([MASK], [CLS], [SEP], T5 sentinels) from the run's tokenizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmjax.config import Config, DataConfig
from lmjax.errors import ConfigError, DataError
from lmjax.objectives.base import Objective
from lmjax.objectives.causal_lm import CausalLM
from lmjax.objectives.masked_lm import MaskedLM, word_tables
from lmjax.objectives.span_corruption import SpanCorruption, sentinels_needed

if TYPE_CHECKING:
    from lmjax.tokenizers import Tokenizer

MASK_TOKENS = ("[MASK]", "<mask>")
T5_EXTRA_IDS = 100  # T5's vocabulary: its SentencePiece pieces, then 100 sentinels
BERT_CONTROL_SYMBOLS = ("[CLS]", "[SEP]", "[MASK]")


def make_objective(name: str, *, pad_id: int = -1, vocab_size: int = 0, **options) -> Objective:
    """The objective named `name`; masked_lm and span_corruption also need their special ids
    in `options` (see MaskedLM, SpanCorruption), which `objective_for` fills in."""
    if name == "causal_lm":
        return CausalLM(pad_id=pad_id, **options)
    try:
        if name == "masked_lm":
            return MaskedLM(vocab_size=vocab_size, pad_id=pad_id, **options)
        if name == "span_corruption":
            return SpanCorruption(pad_id=pad_id, **options)
    except TypeError as err:
        raise ConfigError(f"objective {name!r}: {err}; objective_for(config, tokenizer) supplies "
                          "the special ids") from None
    raise ConfigError(f"objective {name!r} is not one of causal_lm, masked_lm, span_corruption")


def objective_for(config: Config, tokenizer: Tokenizer) -> Objective:
    """The config's objective, with special ids from `tokenizer` and options from `config.data`."""
    data = config.data
    pad_id = _or_minus_one(tokenizer.pad_id)
    if data.objective == "masked_lm":
        return make_objective("masked_lm", pad_id=pad_id, vocab_size=tokenizer.vocab_size,
                              **_masked_lm_options(config, tokenizer))
    if data.objective == "span_corruption":
        count = sentinels_needed(data.seq_len, data.noise_density, data.mean_noise_span_length)
        vocab_end = _sentinel_end(tokenizer, count, config.model.vocab_size)
        return make_objective("span_corruption", pad_id=pad_id, seq_len=data.seq_len,
                              vocab_end=vocab_end, eos_id=tokenizer.eos_id,
                              noise_density=data.noise_density,
                              mean_noise_span_length=data.mean_noise_span_length)
    return make_objective(data.objective, pad_id=pad_id, loss_chunks=config.model.loss_chunks)


def tokenizer_training_options(data: DataConfig) -> dict:
    """Options for training the run's tokenizer so that it has the special tokens the
    objective needs: T5's sentinels, or BERT's [CLS], [SEP] and [MASK] for SentencePiece
    (WordPiece always has them)."""
    if data.tokenizer != "sentencepiece":
        return {}
    if data.objective == "span_corruption":
        return {"extra_ids": T5_EXTRA_IDS}
    if data.objective == "masked_lm":
        return {"control_symbols": list(BERT_CONTROL_SYMBOLS)}
    return {}


def _masked_lm_options(config: Config, tokenizer: Tokenizer) -> dict:
    options = {
        "mask_id": _mask_id(tokenizer, config.model.vocab_size),
        "special_ids": tuple(sorted(tokenizer.special_tokens.values())),
        "cls_id": _or_minus_one(tokenizer.token_to_id("[CLS]")),
        "sep_id": _or_minus_one(tokenizer.token_to_id("[SEP]")),
        "mask_prob": config.data.mask_prob,
        "nsp": config.model.nsp,
    }
    if config.data.whole_word_mask:
        pieces = [tokenizer.decode([token_id]) for token_id in range(tokenizer.vocab_size)]
        options["joins_left"], options["joins_right"] = word_tables(tokenizer.kind, pieces)
    return options


def _mask_id(tokenizer: Tokenizer, model_vocab_size: int) -> int:
    """The tokenizer's mask token, else the first id past its vocabulary if the model has one."""
    for token in MASK_TOKENS:
        if tokenizer.token_to_id(token) is not None:
            return tokenizer.token_to_id(token)
    if tokenizer.vocab_size < model_vocab_size:
        return tokenizer.vocab_size
    raise DataError(
        f"the {tokenizer.kind} tokenizer has no [MASK] token and uses all model.vocab_size="
        f"{model_vocab_size} ids: use data.tokenizer=wordpiece"
    )


def _sentinel_end(tokenizer: Tokenizer, count: int, model_vocab_size: int) -> int:
    """Where the sentinels count down from: the tokenizer's `<extra_id_0>` (SentencePiece
    trained with extra_ids puts them last), else the end of the model's vocabulary, if the
    tokenizer leaves `count` ids free there."""
    if tokenizer.token_to_id("<extra_id_0>") is not None:
        ids = tokenizer.sentinel_ids(count)
        if ids != list(range(ids[0], ids[0] - count, -1)):
            raise DataError(f"the tokenizer's T5 sentinels {ids[:4]}... do not count down one by one")
        return ids[0] + 1
    if tokenizer.vocab_size + count <= model_vocab_size:
        return model_vocab_size
    raise DataError(
        f"span corruption needs {count} sentinel ids but the {tokenizer.kind} tokenizer has no "
        f"<extra_id_*> tokens and uses all model.vocab_size={model_vocab_size} ids: train one with "
        f"`lmjax tokenizer train --kind sentencepiece --extra-ids {max(count, T5_EXTRA_IDS)} ...` "
        "and pass data.tokenizer_dir=DIR"
    )


def _or_minus_one(value: int | None) -> int:
    return -1 if value is None else value


__all__ = [
    "CausalLM", "MaskedLM", "Objective", "SpanCorruption", "make_objective", "objective_for",
    "tokenizer_training_options",
]
