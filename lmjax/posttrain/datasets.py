"""Post-training datasets: read and write jsonl files, and build the task's own data by
sampling stories with the KV-cache decoder.

Files in the common layouts are read by one loader per kind, so the task's files and a
user's take the same path:
- SFT: `{"prompt": str, "response": str}` or chat `{"messages": [{"role", "content"}, ...]}`
  whose last message is the assistant's response;
- preferences: `{"prompt": str | messages, "chosen": str, "rejected": str}` (chosen and
  rejected may also be message lists ending with the assistant's answer).
Every bad line fails in one line naming the file, the line and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmjax.decoding.gpt import Generator
from lmjax.errors import DataError
from lmjax.posttrain import task
from lmjax.posttrain.examples import ROLES, PreferencePair, SFTExample, Turn, last_user_text, user_prompt
from lmjax.posttrain.template import ChatTemplate
from lmjax.tokenizers import Tokenizer


def write_sft(path: str | pathlib.Path, examples: Sequence[SFTExample], chat: bool = False) -> None:
    """One example a line, as {prompt, response} or (chat) {messages}."""
    rows = [_sft_row(example, chat) for example in examples]
    _write_jsonl(path, rows)


def write_preferences(path: str | pathlib.Path, pairs: Sequence[PreferencePair]) -> None:
    rows = [{"prompt": _prompt_field(pair.prompt), "chosen": pair.chosen, "rejected": pair.rejected}
            for pair in pairs]
    _write_jsonl(path, rows)


def read_sft(path: str | pathlib.Path) -> list[SFTExample]:
    """SFT examples from a {prompt, response} or chat {messages} jsonl file."""
    return [_sft_example(row, where) for row, where in _read_jsonl(path)]


def read_preferences(path: str | pathlib.Path) -> list[PreferencePair]:
    """Preference pairs from a {prompt, chosen, rejected} jsonl file."""
    return [_preference(row, where) for row, where in _read_jsonl(path)]


def _write_jsonl(path: str | pathlib.Path, rows: list[dict]) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _read_jsonl(path: str | pathlib.Path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist: give a jsonl file with one example per line")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where} is not valid JSON ({err.msg}): write one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{where} is a JSON {type(row).__name__}, not an object")
        rows.append((row, where))
    if not rows:
        raise DataError(f"{path} holds no examples")
    return rows


def _sft_row(example: SFTExample, chat: bool) -> dict[str, Any]:
    if chat:
        messages = [{"role": role, "content": content} for role, content in example.prompt]
        return {"messages": messages + [{"role": "assistant", "content": example.response}]}
    return {"prompt": _prompt_field(example.prompt), "response": example.response}


def _prompt_field(prompt: tuple[Turn, ...]) -> str | list[dict[str, str]]:
    """A lone user turn as plain text, a longer conversation as messages."""
    if len(prompt) == 1 and prompt[0][0] == "user":
        return prompt[0][1]
    return [{"role": role, "content": content} for role, content in prompt]


def _sft_example(row: dict, where: str) -> SFTExample:
    if "messages" in row:
        turns = _turns(row["messages"], where, "messages")
        if len(turns) < 2 or turns[-1][0] != "assistant":
            raise DataError(f"{where}: messages must end with an assistant message after at least "
                            "one other message (the response to learn)")
        return SFTExample(turns[:-1], turns[-1][1])
    _require(row, ("prompt", "response"), where, 'SFT lines need "prompt" and "response" or "messages"')
    return SFTExample(_prompt(row["prompt"], where), _text(row["response"], where, "response"))


def _preference(row: dict, where: str) -> PreferencePair:
    _require(row, ("prompt", "chosen", "rejected"), where, 'preference lines need "prompt", "chosen" and "rejected"')
    chosen = _answer(row["chosen"], where, "chosen")
    rejected = _answer(row["rejected"], where, "rejected")
    if chosen == rejected:
        raise DataError(f"{where}: chosen and rejected are identical, so the pair prefers nothing: "
                        "drop the line or give two different responses")
    return PreferencePair(_prompt(row["prompt"], where), chosen, rejected)


def _require(row: dict, fields: tuple[str, ...], where: str, layout: str) -> None:
    missing = [field for field in fields if field not in row]
    if missing:
        raise DataError(f"{where} lacks {', '.join(repr(m) for m in missing)}: {layout}")


def _prompt(value: Any, where: str) -> tuple[Turn, ...]:
    if isinstance(value, str):
        return user_prompt(value)
    return _turns(value, where, "prompt")


def _answer(value: Any, where: str, field: str) -> str:
    """A response given as text or as messages ending with the assistant's."""
    if isinstance(value, list):
        turns = _turns(value, where, field)
        if turns[-1][0] != "assistant":
            raise DataError(f"{where}: {field} messages must end with an assistant message")
        return turns[-1][1]
    return _text(value, where, field)


def _text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: {field} must be a non-empty string")
    return value


def _turns(messages: Any, where: str, field: str) -> tuple[Turn, ...]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: {field} must be a non-empty list of {{role, content}} messages")
    turns = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES or "content" not in message:
            raise DataError(f"{where}: each message in {field} needs a role in {ROLES} and a content")
        turns.append((message["role"], _text(message["content"], where, f"{field} content")))
    return tuple(turns)


def sample_responses(generator: Generator, tokenizer: Tokenizer, template: ChatTemplate,
                     prompts: Sequence[tuple[Turn, ...] | None], max_new_tokens: int, seed: int,
                     batch_size: int = 64) -> list[str]:
    """One sampled response per prompt (None: a story from BOS alone), decoded; each batch
    draws with its own seed derived from `seed`, so the same call gives the same texts."""
    stop = {i for i in (template.end_id(tokenizer), tokenizer.bos_id, tokenizer.eos_id) if i is not None}
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        rows = [template.prompt_ids(tokenizer, p) if p is not None else [tokenizer.bos_id] for p in chunk]
        new = generator.generate(rows, max_new_tokens, seed=seed * 100_003 + start, stop_ids=stop)
        texts.extend(tokenizer.decode(ids).strip() for ids in new)
    return texts


def task_prompts(n: int, seed: int) -> list[tuple[Turn, ...]]:
    """`n` instructions with words drawn uniformly from the task's list."""
    words = np.random.default_rng(seed).choice(task.WORDS, size=n)
    return [user_prompt(task.instruction(str(word))) for word in words]


def task_rewards(prompts: Sequence[tuple[Turn, ...]], responses: Sequence[str]) -> np.ndarray:
    """The task's reward of each response for its prompt's word."""
    return np.array([task.reward(text, task.word_in(last_user_text(prompt)))
                     for prompt, text in zip(prompts, responses, strict=True)])


@dataclasses.dataclass(frozen=True)
class PreferenceSamples:
    """`samples_per_prompt` responses of a model to each prompt, with the task reward of each
    (rewards[i, j] is texts[i][j]'s reward for prompts[i])."""
    prompts: list[tuple[Turn, ...]]
    texts: list[list[str]]
    rewards: np.ndarray

    def subset(self, indices: Sequence[int]) -> "PreferenceSamples":
        return PreferenceSamples([self.prompts[i] for i in indices], [self.texts[i] for i in indices],
                                 self.rewards[np.asarray(indices, np.int64)])


def sample_preference_data(generator: Generator, tokenizer: Tokenizer, template: ChatTemplate,
                           n_prompts: int, samples_per_prompt: int, max_new_tokens: int,
                           seed: int) -> PreferenceSamples:
    """`samples_per_prompt` responses of the (SFT) model to each of `n_prompts` task
    instructions (words drawn uniformly), judged by the task reward."""
    prompts = task_prompts(n_prompts, seed)
    repeated = [prompt for prompt in prompts for _ in range(samples_per_prompt)]
    texts = sample_responses(generator, tokenizer, template, repeated, max_new_tokens, seed + 1)
    rewards = task_rewards(repeated, texts).reshape(n_prompts, samples_per_prompt)
    grouped = [texts[i * samples_per_prompt:(i + 1) * samples_per_prompt] for i in range(n_prompts)]
    return PreferenceSamples(prompts, grouped, rewards)


def best_worst_pairs(samples: PreferenceSamples) -> list[PreferencePair]:
    """One pair per prompt: the best sample by the task reward chosen, the worst rejected;
    prompts whose samples all tie are dropped."""
    pairs = []
    for prompt, texts, row in zip(samples.prompts, samples.texts, samples.rewards, strict=True):
        best, worst = int(np.argmax(row)), int(np.argmin(row))
        chosen, rejected = texts[best], texts[worst]
        if row[best] > row[worst] and rejected and chosen != rejected:
            pairs.append(PreferencePair(prompt, chosen, rejected))
    return pairs


def all_pairs(samples: PreferenceSamples) -> list[PreferencePair]:
    """Every pair of one prompt's samples whose rewards differ, the higher chosen (k samples
    give up to k(k-1)/2 pairs per prompt)."""
    pairs = []
    for prompt, texts, row in zip(samples.prompts, samples.texts, samples.rewards, strict=True):
        for i in range(len(texts)):
            for j in range(len(texts)):
                if row[i] > row[j] and texts[i] and texts[j] and texts[i] != texts[j]:
                    pairs.append(PreferencePair(prompt, texts[i], texts[j]))
    return pairs


def cross_prompt_pairs(samples: PreferenceSamples, per_chosen: int, seed: int) -> list[PreferencePair]:
    """For each sample that uses its prompt's word (reward > 0), `per_chosen` pairs whose
    rejected response is another prompt's sample (of the same `samples`) that lacks the word:
    the same prompt for both sides, judged by the same reward (the rejected one scores 0)."""
    rng = np.random.default_rng(seed)
    pool = [text for texts in samples.texts for text in texts if text]
    pairs = []
    for index, (prompt, texts, row) in enumerate(zip(samples.prompts, samples.texts, samples.rewards, strict=True)):
        word = task.word_in(last_user_text(prompt))
        own = set(texts)
        for text, score in zip(texts, row, strict=True):
            if score <= 0 or not text:
                continue
            found, tries = 0, 0
            while found < per_chosen and tries < 50 * per_chosen:
                tries += 1
                other = pool[int(rng.integers(len(pool)))]
                if other in own or task.reward(other, word) != 0.0:
                    continue
                pairs.append(PreferencePair(prompt, text, other))
                found += 1
    return pairs


def split_by_word(samples: PreferenceSamples, held_out_words: int, held_out_fraction: float,
                  seed: int) -> tuple[list[int], list[int], list[int], tuple[str, ...]]:
    """Prompt indices for training, for held-out prompts of training words (new samples of
    instructions seen in training) and for held-out words (instructions never seen in
    training), and the held-out words. No prompt index is in two sets and no held-out word's
    instruction is in the training set."""
    rng = np.random.default_rng(seed)
    words = [task.word_in(last_user_text(prompt)) for prompt in samples.prompts]
    unseen = tuple(sorted(rng.choice(sorted(set(words)), size=held_out_words, replace=False).tolist()))
    seen = [i for i, word in enumerate(words) if word not in unseen]
    order = rng.permutation(len(seen))
    n_test = int(round(held_out_fraction * len(seen)))
    test = sorted(seen[i] for i in order[:n_test])
    train = sorted(seen[i] for i in order[n_test:])
    return train, test, [i for i, word in enumerate(words) if word in unseen], unseen

