"""What `lmjax generate` does: open a model with `lmjax.runs.open_run`, turn the prompt into
ids by the conventions of where the model came from, and decode.

Conventions: for a llama2.c `.bin` a prompt is BOS then the SentencePiece ids of its text and
BOS ends a story (llama2.c's run.c); for a GPT run, export or transformers GPT-2 a prompt
starts with BOS (or the EOS that separates packed documents) and EOS ends a text; for T5 the
prompt is the encoder input (the text's ids then EOS, as T5 does), the decoder starts from
the pad id 0 and EOS ends the output. BERT cannot generate. Everything that can be checked
before the parameters are read is checked first, so bad input costs no loading or compiling.
"""

from __future__ import annotations

import dataclasses
import math
import time

from lmjax.decoding import Sampling, make_generator
from lmjax.errors import ConfigError, DataError
from lmjax.runs.layout import PathLike
from lmjax.runs.open import Located, Run, TokenizerLike, locate
from lmjax.tokenizers import Tokenizer

GENERATING_ARCHS = ("gpt", "t5")
T5_DECODER_START_ID = 0  # T5 starts its decoder from the pad id


@dataclasses.dataclass
class Generation:
    prompt_ids: list[int]
    generated_ids: list[int]
    text: str  # GPT: the prompt's text followed by the continuation; T5: the decoder's output
    seconds: float  # compilation included


def check_max_new_tokens(max_new_tokens: int) -> None:
    """0 is allowed (the prompt back, nothing generated); a negative count is a mistake."""
    if max_new_tokens < 0:
        raise ConfigError(f"--max-new-tokens={max_new_tokens} must be >= 0 (the number of tokens to add)")


def check_temperature(temperature: float) -> None:
    """NaN or an infinity would pass `Sampling`'s `>= 0` check and decode garbage."""
    if not math.isfinite(temperature):
        raise ConfigError(f"--temperature={temperature} must be a finite number >= 0 (0 is greedy)")


def check_prompt_text(prompt: str) -> None:
    """A shell passes bytes that are not UTF-8 as surrogates (surrogateescape), which no
    tokenizer can encode: name the first such byte instead of failing inside the tokenizer."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:
        byte = prompt[err.start].encode("utf-8", "surrogateescape")
        raise DataError(
            f"--prompt is not UTF-8 text (byte 0x{byte.hex()} at position {err.start}): "
            "give the prompt as UTF-8"
        ) from None


def check_generates(found: Located) -> None:
    arch = found.config.model.arch
    if arch not in GENERATING_ARCHS:
        raise ConfigError(
            f"{found.path} holds a {arch} model; generation needs a decoder (gpt) or an "
            "encoder-decoder (t5): BERT predicts masked tokens only"
        )


def prompt_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """BOS (or, for tokenizers without one, the EOS that separates documents) then the text."""
    start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    ids = ([start] if start is not None else []) + (tokenizer.encode_ordinary(text) if text else [])
    if not ids:
        raise DataError("this tokenizer has neither BOS nor EOS: give a --prompt to start from")
    return ids


def encoder_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """T5's encoder input: the text's ids followed by EOS."""
    ids = (tokenizer.encode_ordinary(text) if text else []) + (
        [tokenizer.eos_id] if tokenizer.eos_id is not None else [])
    if not ids:
        raise DataError("this tokenizer has no EOS: give a --prompt for the encoder")
    return ids


def stop_ids(tokenizer: Tokenizer, run: Run | Located) -> frozenset[int]:
    """BOS ends a llama2.c story; EOS ends every other model's text."""
    stop = tokenizer.bos_id if run.source == "llama2c" else tokenizer.eos_id
    return frozenset() if stop is None else frozenset({stop})


def generate(
    checkpoint_path: PathLike,
    tokenizer_path: TokenizerLike = None,
    prompt: str = "",
    max_new_tokens: int = 256,
    sampling: Sampling | None = None,
    seed: int = 0,
    stop: bool = True,
    use_cache: bool = True,
) -> Generation:
    """Open, check, then continue `prompt` (sampling defaults to temperature 1): the
    in-process form of `lmjax generate`."""
    check_max_new_tokens(max_new_tokens)
    check_temperature((sampling or Sampling()).temperature)
    check_prompt_text(prompt)
    found = locate(checkpoint_path)
    check_generates(found)
    tokenizer = found.load_tokenizer(tokenizer_path)
    if tokenizer is None:
        raise DataError(f"{found.path} comes without a tokenizer: give --tokenizer (a tokenizer "
                        "directory, a tokenizer.json or a SentencePiece .model file)")
    is_t5 = found.config.model.arch == "t5"
    ids = encoder_ids(tokenizer, prompt) if is_t5 else prompt_ids(tokenizer, prompt)
    if not is_t5 and len(ids) > found.config.model.max_len:
        raise DataError(
            f"the prompt is {len(ids)} tokens but the model's context is {found.config.model.max_len}: "
            "shorten the prompt"
        )
    run = found.open(tokenizer=tokenizer)
    generator = make_generator(run.model, run.params, sampling or Sampling(), tokenizer.vocab_size,
                               decoder_start_id=T5_DECODER_START_ID)
    start = time.perf_counter()
    new_ids = generator.generate(ids, max_new_tokens, seed, stop_ids(tokenizer, run) if stop else (),
                                 use_cache)[0]
    seconds = time.perf_counter() - start
    if is_t5:
        return Generation(ids, new_ids, tokenizer.decode(new_ids), seconds)
    text_ids = ids[1:] if ids[0] in (tokenizer.bos_id, tokenizer.eos_id) else ids
    return Generation(ids, new_ids, tokenizer.decode(text_ids + new_ids), seconds)
