"""What `lmjax generate` loads: a decoder checkpoint, its tokenizer, and the conventions of
where it came from (how a prompt starts, which token ends a text).

Two sources: a llama2.c `.bin` file (a prompt is BOS then the SentencePiece ids of its text,
and BOS ends a story, as in llama2.c's run.c), or an lmjax run or export directory (the
tokenizer defaults to the run's `tokenizer/`; EOS, the packing separator, ends a text).
Everything is checked before the model is built, so bad input costs no compilation.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import yaml

from lmjax import config as config_lib
from lmjax import tokenizers
from lmjax.runs.importers import llama2c
from lmjax.config import ModelConfig
from lmjax.decoding import Generator, Sampling
from lmjax.errors import CheckpointError, DataError
from lmjax.tokenizers import SentencePieceTokenizer, Tokenizer

DECODER_ARCHS = ("gpt",)


@dataclasses.dataclass
class Checkpoint:
    config: ModelConfig
    params: Any
    default_tokenizer: pathlib.Path | None
    from_llama2c: bool


@dataclasses.dataclass
class Generation:
    prompt_ids: list[int]
    generated_ids: list[int]
    text: str  # the prompt's text followed by the continuation
    seconds: float  # compilation included


def load_checkpoint(path: str | pathlib.Path) -> Checkpoint:
    """A llama2.c file, or a run/export directory of a decoder model."""
    path = pathlib.Path(path)
    if path.is_file():
        config, params = llama2c.load(path)
        return Checkpoint(config, params, None, from_llama2c=True)
    if not (path / "config.yaml").is_file():
        raise CheckpointError(
            f"{path} is neither a llama2.c .bin file nor a run or export directory with config.yaml"
        )
    values = yaml.safe_load((path / "config.yaml").read_text()) or {}
    arch = (values.get("model") or {}).get("arch", "gpt")
    if arch not in DECODER_ARCHS:
        raise CheckpointError(
            f"{path} holds a {arch} model, but generation supports decoder-only models "
            f"(arch {', '.join(DECODER_ARCHS)})"
        )
    config = config_lib.from_dict(values).model
    from lmjax.runs.params import load_params

    return Checkpoint(config, load_params(path, _abstract_params(config)), path / "tokenizer",
                      from_llama2c=False)


def _abstract_params(config: ModelConfig) -> Any:
    """Parameter shapes on one device: a run trained on a mesh of many devices restores here."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from lmjax.models import build_model

    ids = jnp.zeros((1, 1), jnp.int32)
    shapes = nn.meta.unbox(jax.eval_shape(build_model(config).init, jax.random.PRNGKey(0), ids))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
                        shapes["params"])


def load_tokenizer(path: str | pathlib.Path | None, checkpoint: Checkpoint) -> Tokenizer:
    """A SentencePiece `.model` file or a saved tokenizer directory, checked against the model."""
    path = pathlib.Path(path) if path else checkpoint.default_tokenizer
    if path is None:
        raise DataError("a llama2.c checkpoint needs --tokenizer: its SentencePiece .model file")
    if path.is_dir():
        tokenizer = tokenizers.load(path)
    elif path.suffix == ".model":
        tokenizer = SentencePieceTokenizer.from_file(path)
    else:
        raise DataError(f"tokenizer {path} is neither a tokenizer directory nor a SentencePiece .model file")
    _check_vocab(tokenizer, path, checkpoint)
    return tokenizer


def _check_vocab(tokenizer: Tokenizer, path: pathlib.Path, checkpoint: Checkpoint) -> None:
    """llama2.c classifiers have exactly one row per piece; an lmjax run may pad its table."""
    model_vocab = checkpoint.config.vocab_size
    if tokenizer.vocab_size > model_vocab or checkpoint.from_llama2c and tokenizer.vocab_size != model_vocab:
        raise DataError(
            f"tokenizer {path} has {tokenizer.vocab_size} ids but the model's vocabulary is {model_vocab}: "
            "give the tokenizer the model was trained with"
        )


def prompt_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """BOS (or, for tokenizers without one, the EOS that separates documents) then the text."""
    start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    ids = ([start] if start is not None else []) + (tokenizer.encode_ordinary(text) if text else [])
    if not ids:
        raise DataError("this tokenizer has neither BOS nor EOS: give a --prompt to start from")
    return ids


def stop_ids(tokenizer: Tokenizer, checkpoint: Checkpoint) -> frozenset[int]:
    stop = tokenizer.bos_id if checkpoint.from_llama2c else tokenizer.eos_id
    return frozenset() if stop is None else frozenset({stop})


def generate(
    checkpoint_path: str | pathlib.Path,
    tokenizer_path: str | pathlib.Path | None = None,
    prompt: str = "",
    max_new_tokens: int = 256,
    sampling: Sampling | None = None,
    seed: int = 0,
    stop: bool = True,
    use_cache: bool = True,
) -> Generation:
    """Load, check, then continue `prompt` (sampling defaults to temperature 1): the
    in-process form of `lmjax generate`."""
    checkpoint = load_checkpoint(checkpoint_path)
    tokenizer = load_tokenizer(tokenizer_path, checkpoint)
    ids = prompt_ids(tokenizer, prompt)
    if len(ids) > checkpoint.config.max_len:
        raise DataError(
            f"the prompt is {len(ids)} tokens but the model's context is {checkpoint.config.max_len}: "
            "shorten the prompt"
        )
    from lmjax.models import build_model

    generator = Generator(build_model(checkpoint.config), checkpoint.params, sampling or Sampling(),
                          tokenizer.vocab_size)
    start = time.perf_counter()
    new_ids = generator.generate(
        ids, max_new_tokens, seed, stop_ids(tokenizer, checkpoint) if stop else (), use_cache
    )[0]
    seconds = time.perf_counter() - start
    text_ids = ids[1:] if ids[0] in (tokenizer.bos_id, tokenizer.eos_id) else ids
    return Generation(ids, new_ids, tokenizer.decode(text_ids + new_ids), seconds)
