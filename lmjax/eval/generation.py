"""Generation tasks: answers extracted from generated text, and self-consistency.

A `generate_until` task (e.g. `arithmetic_scratchpad`) lets the model write, then takes the
answer with the harness's own filters (`filter_list`: `regex`, then `take_first` or
`majority_vote`), as the harness's gsm8k-cot tasks do, and scores it by exact match.

Self-consistency (Wang et al., 2023) is the harness's `repeats`: `--samples K` asks for K
continuations of every prompt, `LmjaxLM` samples them at `--temperature T` with seeded keys,
and a task's `majority_vote` filter keeps the most frequent extracted answer. The tie rule is
the harness's (`collections.Counter.most_common`): among answers with the top count, the one
that appears first among the K paths wins; a path without an answer counts as the answer
"[invalid]" (the regex filter's fallback), so K unreadable paths vote "[invalid]" and score 0.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from lmjax.errors import ConfigError

DEFAULT_HARNESS_REGEX = r"#### (\-?[0-9\.\,]+)"  # lm-eval's RegexFilter default


@dataclasses.dataclass(frozen=True)
class SelfConsistency:
    """How many paths each generation prompt gets and how they are drawn: K = 1 at
    temperature 0 is greedy decoding (the default); the seed fixes every sampled path."""

    samples: int = 1
    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"--samples={self.samples} must be >= 1 (paths per prompt)")
        if self.temperature < 0:
            raise ConfigError(f"--temperature={self.temperature} must be >= 0 (0 is greedy)")
        if self.samples > 1 and self.temperature <= 0:
            raise ConfigError(f"--samples={self.samples} needs --temperature > 0: greedy decoding would "
                              "give the same path every time (e.g. --temperature 0.7)")


def check_filters(config: dict[str, Any], where: Any) -> None:
    """Every `regex` filter of a task compiles, or a one-line error naming the task file and
    the filter (the harness would raise `re.error` from deep inside its task loading)."""
    for entry in config.get("filter_list") or []:
        for function in entry.get("filter") or []:
            if function.get("function") != "regex":
                continue
            pattern = function.get("regex_pattern", DEFAULT_HARNESS_REGEX)
            try:
                re.compile(pattern)
            except (re.error, TypeError) as err:
                raise ConfigError(f"{where}: filter {entry.get('name')!r} has a regex_pattern {pattern!r} "
                                  f"that does not compile ({err}): fix the pattern") from None


def with_samples(config: dict[str, Any], samples: int) -> dict[str, Any]:
    """The task config asking K paths per prompt (`repeats`); other tasks are unchanged."""
    if samples > 1 and config.get("output_type") == "generate_until":
        config["repeats"] = samples
    return config


def sampled_paths(samples: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per document from the harness's logged samples (one per document and
    filter): its prompt, every generated path, the answer extracted from each path, and what
    each filter kept (e.g. {"first": "125", "vote": "124"})."""
    extract = _answer_extractor(config)
    by_doc: dict[Any, dict[str, Any]] = {}
    for sample in samples:
        record = by_doc.get(sample["doc_id"])
        if record is None:
            paths = [text for per_request in sample["resps"] for text in per_request]
            record = by_doc[sample["doc_id"]] = {
                "doc_id": sample["doc_id"], "arguments": sample["arguments"], "target": sample.get("target"),
                "paths": paths, "answers": extract(paths), "filtered": {}}
        record["filtered"][sample["filter"]] = _first(sample["filtered_resps"])
    return list(by_doc.values())


def _answer_extractor(config: dict[str, Any]) -> Any:
    """The task's first `regex` filter applied to each path alone (the text itself when the
    task has none)."""
    from lm_eval.filters.extraction import RegexFilter

    for entry in config.get("filter_list") or []:
        for function in entry.get("filter") or []:
            if function.get("function") == "regex":
                options = {key: value for key, value in function.items() if key != "function"}
                regex = RegexFilter(**options)
                return lambda paths: regex.apply([paths], [{}])[0]
    return lambda paths: list(paths)


def _first(filtered: list[Any]) -> Any:
    """The harness logs one filtered value per request; a task has one request per document."""
    return filtered[0] if isinstance(filtered, list) and len(filtered) == 1 else filtered
