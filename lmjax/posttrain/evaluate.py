"""How a model does on the task: sample one response per prompt, judge it, and measure the
KL to a reference on those samples (sum over response tokens of log π − log π_ref, the
Monte-Carlo estimate of KL(π ‖ π_ref) per response)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from lmjax.decoding import Sampling, make_generator
from lmjax.posttrain import datasets
from lmjax.posttrain.examples import Turn
from lmjax.posttrain.ppo import rollout_rows
from lmjax.posttrain.sequences import response_logprobs
from lmjax.posttrain.template import ChatTemplate
from lmjax.tokenizers import Tokenizer


def evaluate_task(model: nn.Module, params: Any, tokenizer: Tokenizer, template: ChatTemplate,
                  prompts: Sequence[tuple[Turn, ...]], max_new_tokens: int, seed: int,
                  reference: Any | None = None, temperature: float = 1.0) -> dict[str, float]:
    """word_use_rate, reward and (with a reference) kl, over one sample per prompt."""
    generator = make_generator(model, params, Sampling(temperature))
    prompt_ids = [template.prompt_ids(tokenizer, prompt) for prompt in prompts]
    new = generator.generate(prompt_ids, max_new_tokens, seed=seed, stop_ids=template.stop_ids(tokenizer))
    texts = [tokenizer.decode(ids).strip() for ids in new]
    rewards = datasets.task_rewards(prompts, texts)  # 0 exactly when the story lacks the word
    result = {"word_use_rate": float(np.mean(rewards > 0)), "reward": float(np.mean(rewards))}
    if reference is not None:
        seq_len = max(len(p) for p in prompt_ids) + max_new_tokens
        rows = rollout_rows(prompt_ids, new, seq_len)
        result["kl"] = sequence_kl(model, params, reference, rows)
    return result


def sequence_kl(model: nn.Module, params: Any, reference: Any, rows: dict[str, np.ndarray]) -> float:
    """Mean over rows of Σ_response (log π − log π_ref)."""
    diff = jax.jit(lambda a, b: response_logprobs(model, a, rows) - response_logprobs(model, b, rows))(
        params, reference)
    return float(np.mean(np.asarray(diff)))
