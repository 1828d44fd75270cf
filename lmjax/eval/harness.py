"""`LmjaxLM`: any model `lmjax.runs.open_run` opens (or an n-gram model) as an
lm-evaluation-harness model, registered as `lmjax` when this module is imported
(`lm_eval.simple_evaluate(model="lmjax", model_args="checkpoint=PATH")`). The harness's
command line (`lm_eval --model lmjax`) cannot find it: lm-eval 0.4 loads no model plugins
by entry point, so use `lmjax eval` there.

The harness does the tasks, prompts, few-shot sampling and metrics; this class only turns its
requests into scores. `loglikelihood` goes through the harness's own `TemplateLM`
tokenization (trailing spaces moved into the continuation, an empty context replaced by the
start-of-text token); `loglikelihood_rolling` cuts each text with the harness's
`get_rolling_token_windows` + `make_disjoint_window`, so every token is predicted exactly
once. `rolling_context` is the harness's `context_len`: 1 (the default, as the harness's
transformers backend) gives disjoint windows of `max_len` predictions; c > 1 gives each
window after the first c-1 tokens of overlap as context and `max_len - c + 1` new
predictions, i.e. a stride of `max_len - c + 1` (better perplexity, more compute).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from lmjax.errors import ConfigError, DataError
from lmjax.eval.adapters import ModelAdapter, adapter_for, batch_size_of, encode_request
from lmjax.eval.dependency import require_harness
from lmjax.runs.layout import RunLayout, as_path

require_harness()

from lm_eval import utils as harness_utils  # noqa: E402
from lm_eval.api.model import TemplateLM  # noqa: E402
from lm_eval.api.registry import register_model  # noqa: E402
from tqdm import tqdm  # noqa: E402

DEFAULT_MAX_GEN_TOKS = 256


class Unsupported(ConfigError):
    """The model cannot answer this kind of request; the task is reported as n/a."""


@register_model("lmjax")
class LmjaxLM(TemplateLM):
    """A harness model over an opened `Run`, an `NGramLM`, or a path `open_run` accepts."""

    def __init__(self, checkpoint: Any, tokenizer: Any = None, batch_size: int | str = 8,
                 rolling_context: int | str = 1, max_gen_toks: int | str = DEFAULT_MAX_GEN_TOKS,
                 truncate: bool | str = False, temperature: float | str = 0.0, seed: int | str = 0,
                 **harness_options: Any) -> None:
        """`harness_options` (device, max_batch_size, ...) are what `lm_eval` passes every
        model; lmjax places and batches by itself, so they are not used. `temperature` > 0
        samples generations (self-consistency's paths) with keys from `seed`; 0 is greedy."""
        super().__init__()
        rows = batch_size_of(batch_size)
        self.adapter: ModelAdapter = adapter_for(open_model(checkpoint, tokenizer), rows)
        if self.adapter.kind == "ngram" and isinstance(checkpoint, (str, os.PathLike)):
            self.adapter.identity["path"] = os.fspath(as_path(checkpoint))
        # The harness reads `backend` as "causal" or "seq2seq".
        self.backend = "seq2seq" if self.adapter.kind in ("seq2seq", "pll") else "causal"
        self.rolling_context = int(rolling_context)
        self.max_gen_toks = int(max_gen_toks)
        self.temperature, self.seed = float(temperature), int(seed)
        if self.temperature < 0:
            raise ConfigError(f"temperature={self.temperature} must be >= 0 (0 is greedy)")
        self.strict_context = str(truncate).lower() not in ("true", "1")
        self.progress_label = ""  # the task's name on the progress bars, set by evaluate()
        self.shots = 0  # the task's in-context examples, set by evaluate(), for error messages
        limit = self.adapter.max_len
        if self.rolling_context < 1 or limit is not None and self.rolling_context > limit:
            raise ConfigError(f"rolling_context={self.rolling_context} must lie in [1, {limit}] "
                              "(the model's context)")

    @property
    def eot_token_id(self) -> Any:
        return self.adapter.prefix

    @property
    def max_length(self) -> int | None:
        return self.adapter.max_len

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list:
        return self.adapter.encode(string, special=add_special_tokens is not False)

    def tok_decode(self, tokens: list) -> str:
        return self.adapter.decode(tokens)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list, list]:
        return encode_request(self.adapter, context, continuation)

    def _check(self, output_type: str) -> None:
        reason = self.adapter.unsupported(output_type, self.progress_label)
        if reason is not None:
            raise Unsupported(reason)

    def _loglikelihood_tokens(self, requests: list, disable_tqdm: bool = False,
                              **kwargs: Any) -> list[tuple[float, bool]]:
        self._check("loglikelihood")
        pairs = [(context, continuation) for _, context, continuation in requests]
        if self.strict_context:
            self.check_lengths(pairs)
        with tqdm(total=len(pairs), desc=self.progress_label or "loglikelihood", disable=disable_tqdm) as bar:
            return self.adapter.score(pairs, bar.update)

    def check_lengths(self, pairs: list[tuple[list, list]]) -> None:
        """A prompt longer than the model's context is an error, not a silent left cut."""
        limit = self.adapter.max_len
        longest = max((len(c) + len(x) - (self.adapter.kind == "causal") for c, x in pairs), default=0)
        if limit is not None and longest > limit:
            fewer_shots = f"fewer --shots (now {self.shots}), " if self.shots else ""
            raise DataError(
                f"a prompt of {longest} tokens does not fit the model's context of {limit}: use "
                f"{fewer_shots}a model with a longer context, or --truncate (truncate=True) to cut "
                "prompts from the left as the harness's transformers backend does")

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        """Summed log-probability of each whole text, every token predicted exactly once."""
        self._check("loglikelihood_rolling")
        windows, owners = [], []
        for index, (text,) in enumerate(req.args for req in requests):
            for window in self.rolling_windows(self.tok_encode(text, add_special_tokens=False)):
                windows.append(window)
                owners.append(index)
        totals = [0.0] * len(requests)
        with tqdm(total=len(windows), desc=self.progress_label or "loglikelihood_rolling", disable=disable_tqdm) as bar:
            scores = self.adapter.score(windows, bar.update, with_greedy=False)
        for owner, (logprob, _) in zip(owners, scores):
            totals[owner] += logprob
        return totals

    def rolling_windows(self, tokens: list) -> list[tuple[list, list]]:
        """(context, predicted) windows of the harness's rolling scheme; an unbounded model
        (n-gram) reads the whole text as one window."""
        if self.adapter.max_len is None:
            return [([self.adapter.prefix], tokens)] if tokens else []
        return list(map(harness_utils.make_disjoint_window, harness_utils.get_rolling_token_windows(
            token_list=tokens, prefix_token=self.adapter.prefix,
            max_seq_len=self.adapter.max_len, context_len=self.rolling_context)))

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        """Continuations with the key/value cache (greedy, or sampled at `temperature`), cut
        at the first `until` string; requests with the same generation settings run in
        batches of `batch_size` rows. Sampled paths are reproducible: group g, batch b draws
        with seed (seed, g, b), so the same requests give the same paths, and the harness's K
        copies of a prompt (`repeats`) get K different rows of noise."""
        self._check("generate_until")
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, req in enumerate(requests):
            groups[_generation_key(req.args[1], self.max_gen_toks, self.temperature)].append(index)
        outputs: list[str] = [""] * len(requests)
        with tqdm(total=len(requests), desc=self.progress_label or "generate_until", disable=disable_tqdm) as bar:
            for group, ((until, max_new), indices) in enumerate(groups.items()):
                texts = self.adapter.generate([requests[i].args[0] for i in indices], max_new,
                                              temperature=self.temperature, seed=(self.seed, group))
                for i, text in zip(indices, texts):
                    outputs[i] = _cut(text, until)
                bar.update(len(indices))
        return outputs


def _generation_key(gen_kwargs: dict, default_max: int,
                    temperature: float = 0.0) -> tuple[tuple[str, ...], int]:
    """(stop strings, new tokens). A task asking for sampling is refused unless the model was
    given a temperature (`--temperature`), which then decides for every task alike."""
    until = gen_kwargs.get("until", [])
    until = (until,) if isinstance(until, str) else tuple(until)
    if temperature <= 0 and gen_kwargs.get("do_sample") and float(gen_kwargs.get("temperature", 0.0)) > 0:
        raise ConfigError("lmjax evaluates with greedy decoding unless given a temperature: set do_sample "
                          "false or temperature 0 in the task, or pass --temperature T (temperature=T)")
    return until, int(gen_kwargs.get("max_gen_toks", default_max))


def _cut(text: str, until: tuple[str, ...]) -> str:
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


def open_model(checkpoint: Any, tokenizer: Any = None) -> Any:
    """An opened `Run` or `NGramLM` as given, or the model at a path: an n-gram `model.json`
    (or a directory holding one and no config.yaml), else whatever `open_run` opens."""
    from lmjax.ngram import NGramLM
    from lmjax.runs import Run, open_run

    if isinstance(checkpoint, (Run, NGramLM)):
        return checkpoint
    path, layout = as_path(checkpoint), RunLayout.at(checkpoint)
    if path.is_dir() and layout.ngram_model.exists() and not layout.config.exists():
        path = layout.ngram_model
    if path.suffix == ".json" and path.is_file():
        try:
            return NGramLM.load(str(path))
        except (KeyError, ValueError) as err:
            raise DataError(f"{path} is not an n-gram model written by `lmjax ngram train` ({err})") from None
    return open_run(path, tokenizer=tokenizer)
