"""One model adapter per kind of model: what the harness class needs to know about a model.

The border with `lmjax.eval.scorers`: an adapter works on *text and requests* (how text
becomes its model's tokens, which token stands for "start of text", which tasks the model
cannot answer and why, generation); a scorer works on *token ids only* (jitted batches of
(context ids, continuation ids) pairs). The harness class (`lmjax.eval.harness.LmjaxLM`)
only windows and bookkeeps, and asks its adapter for everything model-specific:

- GPT (`causal`): log-probabilities from one causal pass; rolling windows; greedy generation
  with the key/value cache.
- T5 (`seq2seq`): the context is the encoder input (ids then EOS, as T5's tokenizer does);
  greedy generation; no rolling perplexity (T5 has no unconditional model of text).
- BERT (`pll`): pseudo-log-likelihood; no rolling perplexity, no generation.
- n-gram (`ngram`): an `lmjax.ngram.NGramLM` over its unit (word, char, byte or tokenizer
  ids); log-likelihoods and rolling perplexity, no generation (scored here, no scorer).

`unsupported(output_type, task)` gives the reason a task is "n/a" for the model, or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmjax.errors import ConfigError, DataError
from lmjax.eval.scorers import (
    CausalScorer, Pair, Progress, PseudoLogLikelihoodScorer, Score, Seq2SeqScorer,
)

T5_DECODER_START_ID = 0
CLOSED_VOCABULARY_TASKS = ("ptb",)


class ModelAdapter:
    """What LmjaxLM needs from a model. `max_len` None means no context limit."""

    kind: str = ""
    max_len: int | None = None
    prefix: Any = None
    identity: dict[str, Any] = {}

    def encode(self, text: str, special: bool = True) -> list:
        raise NotImplementedError

    def decode(self, tokens: Sequence) -> str:
        raise NotImplementedError

    def score(self, pairs: Sequence[Pair], progress: Progress | None = None,
              with_greedy: bool = True) -> list[Score]:
        raise NotImplementedError

    def generate(self, contexts: Sequence[str], max_new_tokens: int, temperature: float = 0.0,
                 seed: Any = 0) -> list[str]:
        raise ConfigError(f"a {self.kind} model cannot generate text")

    def unsupported(self, output_type: str, task: str = "") -> str | None:
        return None

    def unsupported_metric(self, metric: str) -> str | None:
        """Why a metric the task computes means nothing for this model (None: it does)."""
        return None


class NeuralAdapter(ModelAdapter):
    """Shared by GPT, T5 and BERT: an opened `lmjax.runs.Run` and its tokenizer."""

    def __init__(self, run: Any, batch_size: int):
        if run.tokenizer is None:
            raise DataError(f"{run.path} has no tokenizer: pass --tokenizer (a SentencePiece .model "
                            "a tokenizer.json or a saved tokenizer directory)")
        self.run, self.tokenizer = run, run.tokenizer
        self.max_len = run.config.model.max_len
        self.batch_size = batch_size
        self._generators: dict[float, Any] = {}
        self.identity = {"source": run.source, "path": str(run.path), "step": run.step,
                         "arch": run.config.model.arch, "name": run.config.name,
                         "parameters": int(sum(np.size(leaf) for leaf in _leaves(run.params)))}

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens))

    def score(self, pairs: Sequence[Pair], progress: Progress | None = None,
              with_greedy: bool = True) -> list[Score]:
        return self.scorer.score(pairs, progress)

    def continue_prompts(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
                         seed: Any = 0) -> list[str]:
        """Continuations (GPT) or decoder outputs (T5) of `prompts`, up to EOS, in batches of
        `batch_size` rows through the key/value-cache generator: greedy at temperature 0,
        else sampled, batch b with the seed drawn from (seed, b)."""
        from lmjax.decoding import Sampling, make_generator

        self.check_one_host()
        if temperature not in self._generators:
            self._generators[temperature] = make_generator(
                self.run.model, self.run.params, Sampling(temperature=temperature),
                self.tokenizer.vocab_size, T5_DECODER_START_ID)
        generator = self._generators[temperature]
        stop = () if self.tokenizer.eos_id is None else (self.tokenizer.eos_id,)
        texts = []
        for batch, start in enumerate(range(0, len(prompts), self.batch_size)):
            ids = generator.generate(prompts[start:start + self.batch_size], max_new_tokens,
                                     seed=batch_seed(seed, batch), stop_ids=stop)
            texts.extend(self.decode(row) for row in ids)
        return texts

    def check_one_host(self) -> None:
        """Generation is not broadcast to other hosts (scoring is): refuse it there."""
        from lmjax.eval import multihost

        if multihost.multi_process():
            raise ConfigError("generation tasks run on one host only: evaluate them in a single process")


class CausalAdapter(NeuralAdapter):
    kind = "causal"

    def __init__(self, run: Any, batch_size: int):
        super().__init__(run, batch_size)
        start = self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id
        if start is None:
            raise DataError("the tokenizer has neither BOS nor EOS: the model has no start-of-text token")
        self.prefix = start
        self.scorer = CausalScorer(run.model, run.params, run.config, batch_size)

    def encode(self, text: str, special: bool = True) -> list[int]:
        """The text's ids, after BOS where the tokenizer has one (llama2.c, SentencePiece)."""
        ids = self.tokenizer.encode_ordinary(text) if text else []
        bos = self.tokenizer.bos_id
        return [bos, *ids] if special and bos is not None else ids

    def generate(self, contexts: Sequence[str], max_new_tokens: int, temperature: float = 0.0,
                 seed: Any = 0) -> list[str]:
        keep = max(1, self.max_len - max_new_tokens)
        return self.continue_prompts([(self.encode(text) or [self.prefix])[-keep:] for text in contexts],
                                     max_new_tokens, temperature, seed)


class Seq2SeqAdapter(NeuralAdapter):
    kind = "seq2seq"

    def __init__(self, run: Any, batch_size: int):
        super().__init__(run, batch_size)
        self.prefix = self.tokenizer.eos_id
        self.scorer = Seq2SeqScorer(run.model, run.params, run.config, batch_size,
                                    decoder_start_id=T5_DECODER_START_ID)

    def encode(self, text: str, special: bool = True) -> list[int]:
        """The text's ids, then EOS when `special` (the encoder's input, as T5 tokenizes)."""
        ids = self.tokenizer.encode_ordinary(text) if text else []
        eos = self.tokenizer.eos_id
        return [*ids, eos] if special and eos is not None else ids

    def generate(self, contexts: Sequence[str], max_new_tokens: int, temperature: float = 0.0,
                 seed: Any = 0) -> list[str]:
        return self.continue_prompts([self.encode(text)[-self.max_len:] for text in contexts],
                                     max_new_tokens, temperature, seed)

    def unsupported(self, output_type: str, task: str = "") -> str | None:
        if output_type == "loglikelihood_rolling":
            return "T5 scores a continuation given an encoder input; it has no perplexity of a text"
        return None


class PseudoLogLikelihoodAdapter(NeuralAdapter):
    kind = "pll"

    def __init__(self, run: Any, batch_size: int):
        super().__init__(run, batch_size)
        ids = {name: self.tokenizer.token_to_id(name) for name in ("[CLS]", "[SEP]", "[MASK]")}
        if None in ids.values():
            raise DataError("a BERT tokenizer needs [CLS], [SEP] and [MASK] for pseudo-log-likelihood")
        self.prefix = ids["[CLS]"]
        self.scorer = PseudoLogLikelihoodScorer(
            run.model, run.params, run.config, batch_size,
            cls_id=ids["[CLS]"], sep_id=ids["[SEP]"], mask_id=ids["[MASK]"])

    def encode(self, text: str, special: bool = True) -> list[int]:
        return self.tokenizer.encode_ordinary(text) if text else []

    def score(self, pairs: Sequence[Pair], progress: Progress | None = None,
              with_greedy: bool = True) -> list[Score]:
        stripped = [(context[1:] if context[:1] == [self.prefix] else context, continuation)
                    for context, continuation in pairs]
        return self.scorer.score(stripped, progress)

    def unsupported(self, output_type: str, task: str = "") -> str | None:
        if output_type == "loglikelihood_rolling":
            return ("BERT's pseudo-log-likelihood is not a probability of the text, so it has no "
                    "perplexity or bits per byte")
        if output_type == "generate_until":
            return "BERT is encoder-only: it fills masks but does not generate"
        return None

    def unsupported_metric(self, metric: str) -> str | None:
        if metric == "perplexity":
            return ("BERT's pseudo-log-likelihood is not a probability of the word, so its exponent is "
                    "no perplexity (eval.json keeps it as pseudo_perplexity)")
        return None


class NGramAdapter(ModelAdapter):
    """An n-gram model: tokens are its units; scoring conditions on the last n-1 of them."""

    kind = "ngram"

    def __init__(self, model: Any, path: str = ""):
        from lmjax.ngram.units import TextUnit
        from lmjax.ngram.vocab import BOS

        meta = getattr(model, "meta", {}) or {}
        self.model = model
        self.unit = TextUnit(meta.get("unit", "word"), meta.get("tokenizer"))
        self.prefix = BOS
        self.identity = {"source": "ngram", "path": path, "order": model.order,
                         "smoothing": model.smoothing, "unit": self.unit.unit}

    def encode(self, text: str, special: bool = True) -> list:
        return self.unit.split(text)

    def decode(self, tokens: Sequence) -> str:
        return self.unit.join(tokens)

    def score(self, pairs: Sequence[Pair], progress: Progress | None = None,
              with_greedy: bool = True) -> list[Score]:
        """Token by token; `with_greedy=False` skips the argmax over the vocabulary (False
        comes back), which rolling perplexity never reads."""
        results = []
        for context, continuation in pairs:
            history, total, greedy = self._history(context), 0.0, True
            for token in continuation:
                recent = history[len(history) - (self.model.order - 1):] if self.model.order > 1 else []
                total += float(np.log(self.model.prob(token, recent, allow_zero=True)))
                greedy = greedy and with_greedy and self._is_argmax(token, recent)
                history.append(token)
            results.append((total, greedy))
            if progress is not None:
                progress(1)
        return results

    def _history(self, context: Sequence) -> list:
        """The start token stands for the n-1 `<s>` an n-gram model pads a sentence with."""
        context = list(context)
        if context[:1] == [self.prefix]:
            return [self.prefix] * (self.model.order - 1) + context[1:]
        return context

    def _is_argmax(self, token: Any, recent: list) -> bool:
        from lmjax.ngram.vocab import UNK_ID

        best = int(np.argmax(self.model.distribution(recent)))
        return best == self.model.vocab.index.get(token, UNK_ID)

    def unsupported(self, output_type: str, task: str = "") -> str | None:
        if output_type != "loglikelihood_rolling":
            return "n-gram baselines are scored on the perplexity tasks only"
        if task and self.unit.unit in ("word", "tokenizer") and task not in CLOSED_VOCABULARY_TASKS:
            return (f"a {self.unit.unit}-level n-gram scores unseen units as <unk>; only the "
                    "closed-vocabulary PTB gives a perplexity comparable with other models")
        return None


def encode_request(adapter: ModelAdapter, context: str, continuation: str) -> tuple[list, list]:
    """(context tokens, continuation tokens) as the harness's TemplateLM makes them: an empty
    context becomes the start-of-text token; trailing spaces of the context move into the
    continuation; causal models (and n-grams) encode the whole text and cut it, encoders
    encode the two parts apart."""
    if not context:
        ids = adapter.encode(continuation, special=False)
        return ([adapter.prefix], ids) if not ids or ids[0] != adapter.prefix else (ids[:1], ids[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    if adapter.kind in ("seq2seq", "pll"):
        return adapter.encode(context), adapter.encode(continuation, special=False)
    whole, context_ids = adapter.encode(context + continuation), adapter.encode(context)
    return context_ids, whole[len(context_ids):]


def batch_seed(seed: Any, batch: int) -> int:
    """A 32-bit seed for one generation batch from the caller's seed (an int or a tuple of
    ints) and the batch's index: reproducible, and different for every batch."""
    parts = [*seed, batch] if isinstance(seed, tuple) else [seed, batch]
    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0])


def _leaves(tree: Any) -> list:
    import jax

    return jax.tree.leaves(tree)


def batch_size_of(value: int | str) -> int:
    """Rows per scoring batch from `--batch-size` or the harness's `batch_size` ("auto" and
    "auto:N", which lm_eval passes every model, mean the default 8)."""
    if str(value).startswith("auto"):
        return 8
    try:
        rows = int(value)
    except ValueError:
        rows = 0
    if rows < 1:
        raise ConfigError(f"--batch-size={value} must be a whole number of rows >= 1")
    return rows


def adapter_for(run: Any, batch_size: int = 8) -> ModelAdapter:
    """The adapter for an opened run (by architecture) or an `NGramLM`."""
    from lmjax.ngram import NGramLM

    batch_size = batch_size_of(batch_size)
    if isinstance(run, NGramLM):
        return NGramAdapter(run)
    arch = run.config.model.arch
    kinds = {"gpt": CausalAdapter, "t5": Seq2SeqAdapter, "bert": PseudoLogLikelihoodAdapter}
    if arch not in kinds:
        raise ConfigError(f"no evaluation adapter for architecture {arch!r}: use gpt, t5 or bert")
    return kinds[arch](run, batch_size)
