"""Helpers only the stories260K experiments use (posttrain_stories.py, compress_stories.py):
the task's SFT data and preference pairs sampled from a model, a model's score on the task,
and a distilled student beside its hard-label baseline. The library keeps the pieces these
are built from (`lmjax.posttrain.datasets`, `.distill`, `.ppo.rollout_rows`)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from lmjax.config import ModelConfig, TrainConfig
from lmjax.decoding import Sampling, make_generator
from lmjax.decoding.gpt import Generator
from lmjax.models import build_model
from lmjax.objectives.causal_lm import CausalLM
from lmjax.posttrain import datasets, distill, task
from lmjax.posttrain.examples import PreferencePair, SFTExample, Turn, user_prompt
from lmjax.posttrain.ppo import rollout_rows
from lmjax.posttrain.sequences import response_logprobs
from lmjax.posttrain.template import ChatTemplate
from lmjax.tokenizers import Tokenizer


def build_sft_examples(generator: Generator, tokenizer: Tokenizer, template: ChatTemplate,
                       n_stories: int, max_new_tokens: int, seed: int) -> list[SFTExample]:
    """Stories sampled from BOS, each paired with the instruction for the task word it uses
    first; stories that use no task word are dropped."""
    stories = datasets.sample_responses(generator, tokenizer, template, [None] * n_stories, max_new_tokens, seed)
    examples = []
    for story in stories:
        uses = [(index, word) for word in task.WORDS if (index := task.first_use(story, word)) is not None]
        if uses:
            examples.append(SFTExample(user_prompt(task.instruction(min(uses)[1])), story))
    return examples


def build_preference_pairs(generator: Generator, tokenizer: Tokenizer, template: ChatTemplate,
                           n_prompts: int, samples_per_prompt: int, max_new_tokens: int,
                           seed: int) -> list[PreferencePair]:
    """For each prompt, `samples_per_prompt` responses of the (SFT) model: the best by the
    task reward is chosen, the worst rejected; prompts whose samples all tie are dropped."""
    return datasets.best_worst_pairs(datasets.sample_preference_data(
        generator, tokenizer, template, n_prompts, samples_per_prompt, max_new_tokens, seed))


def evaluate_task(model: nn.Module, params: Any, tokenizer: Tokenizer, template: ChatTemplate,
                  prompts: Sequence[tuple[Turn, ...]], max_new_tokens: int, seed: int,
                  reference: Any | None = None, temperature: float = 1.0) -> dict[str, float]:
    """word_use_rate, reward and (with a reference) kl, over one sample per prompt: the KL is
    the sum over response tokens of log π − log π_ref, the Monte-Carlo estimate of
    KL(π ‖ π_ref) per response."""
    generator = make_generator(model, params, Sampling(temperature))
    prompt_ids = [template.prompt_ids(tokenizer, prompt) for prompt in prompts]
    new = generator.generate(prompt_ids, max_new_tokens, seed=seed, stop_ids=template.stop_ids(tokenizer))
    texts = [tokenizer.decode(ids).strip() for ids in new]
    rewards = datasets.task_rewards(prompts, texts)  # 0 exactly when the story lacks the word
    result = {"word_use_rate": float(np.mean(rewards > 0)), "reward": float(np.mean(rewards))}
    if reference is not None:
        seq_len = max(len(p) for p in prompt_ids) + max_new_tokens
        rows = rollout_rows(prompt_ids, new, seq_len)
        diff = jax.jit(lambda a, b: response_logprobs(model, a, rows) - response_logprobs(model, b, rows))(
            params, reference)
        result["kl"] = float(np.mean(np.asarray(diff)))
    return result


def distill_and_baseline(teacher: nn.Module, teacher_params: Any, student: ModelConfig,
                         rows: np.ndarray, train: TrainConfig, run_dir: pathlib.Path,
                         objective: distill.Distillation = distill.Distillation()) -> dict[str, tuple[Any, list[float]]]:
    """Two students of one config, from the same initial parameters, trained on the same rows,
    batches and steps, each a run in `run_dir`/<name> (resumed when it exists): "distilled"
    (the objective, against the teacher) and "hard_labels" (cross-entropy on the rows alone);
    each with its loss at every logged step."""
    distill.check_student(teacher.config, student)
    model = build_model(student)
    params = distill.init_params(model, train.seed)
    runs = {"distilled": (objective, distill.teacher_logits_fn(teacher, teacher_params)),
            "hard_labels": (CausalLM(), None)}
    results = {}
    for name, (chosen, teacher_fn) in runs.items():
        trained, records = distill.train_student(model, params, rows, train, run_dir / name, chosen, teacher_fn)
        results[name] = (trained, [record["loss"] for record in records])
    return results
