"""RLHF with PPO (Ouyang et al. 2022): the policy starts from the SFT model, a frozen copy is
the reference, a value head on the policy's final hidden state estimates returns.

Each update samples responses to a batch of prompts through the KV-cache decoder
(`lmjax.decoding`), scores them (`RewardFn`: the task's judge or a reward model), turns
the score into per-token rewards (−kl_coef·(log π_old − log π_ref) at every response token,
plus the score at the last), estimates advantages with GAE and takes `epochs` passes of
minibatch steps on the clipped objective plus the clipped value loss. With `ptx_coef` > 0
(PPO-ptx) each step also adds that multiple of the next-token loss on pretraining rows.
Reported per update: the mean score, the KL to the reference (per response, summed over its
tokens) and whatever `report` measures (the task's word-use rate).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.decoding import Sampling, make_generator
from lmjax.errors import ConfigError
from lmjax.posttrain import datasets
from lmjax.posttrain.examples import Turn
from lmjax.posttrain.gae import gae, whiten
from lmjax.posttrain.heads import apply_head, init_head
from lmjax.posttrain.packing import epoch_batches
from lmjax.posttrain.reward import rewards
from lmjax.posttrain.sequences import logits_and_hidden, masked_mean_nll, token_logprobs
from lmjax.posttrain.template import ChatTemplate
from lmjax.posttrain.trainer import FitConfig, update_step
from lmjax.tokenizers import Tokenizer


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    updates: int = 20
    prompts_per_update: int = 32
    max_new_tokens: int = 48
    seq_len: int = 80  # fixed row length (prompt + response), so scoring compiles once
    temperature: float = 1.0
    kl_coef: float = 0.05
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.1
    epochs: int = 2
    minibatches: int = 2
    lr: float = 3e-4
    ptx_coef: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prompts_per_update % self.minibatches:
            raise ConfigError(f"prompts_per_update={self.prompts_per_update} must split into "
                              f"minibatches={self.minibatches} equal parts")
        if self.max_new_tokens >= self.seq_len:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens} must be below seq_len={self.seq_len}")


@dataclasses.dataclass
class Rollout:
    prompts: list[tuple[Turn, ...]]
    texts: list[str]
    rows: dict[str, np.ndarray]  # inputs, targets, weights (response), last


RewardFn = Callable[[Rollout], np.ndarray]
ReportFn = Callable[[Rollout], dict[str, float]]


def task_reward(rollout: Rollout) -> np.ndarray:
    """The verifiable task's judge (`lmjax.posttrain.task.reward`)."""
    return datasets.task_rewards(rollout.prompts, rollout.texts)


def word_use_rate(rollout: Rollout) -> dict[str, float]:
    return {"word_use_rate": float(np.mean(task_reward(rollout) > 0))}


def rollout_rows(prompt_ids: Sequence[list[int]], responses: Sequence[list[int]], seq_len: int) -> dict[str, np.ndarray]:
    """Right-padded rows of prompt + response: inputs, targets, response weights, last."""
    out = {name: np.zeros((len(prompt_ids), seq_len), dtype)
           for name, dtype in (("inputs", np.int32), ("targets", np.int32), ("weights", np.float32))}
    last = np.zeros(len(prompt_ids), np.int32)
    for b, (prompt, response) in enumerate(zip(prompt_ids, responses, strict=True)):
        ids = np.asarray(prompt + response, np.int32)[:seq_len + 1]
        n = ids.size - 1
        out["inputs"][b, :n], out["targets"][b, :n] = ids[:-1], ids[1:]
        out["weights"][b, len(prompt) - 1:n] = 1.0
        last[b] = n - 1
    return {**out, "last": last}


class PPOTrainer:
    """Holds the policy with its value head ({"policy", "value_head"}), the frozen reference,
    the generator and the optimizer state across updates."""

    def __init__(self, model: nn.Module, sft_params: Any, tokenizer: Tokenizer, template: ChatTemplate,
                 config: PPOConfig, reward_fn: RewardFn = task_reward, report: ReportFn = word_use_rate,
                 ptx_rows: dict[str, np.ndarray] | None = None, ptx_batch_size: int = 8) -> None:
        if config.ptx_coef > 0 and ptx_rows is None:
            raise ConfigError("ptx_coef > 0 needs pretraining rows (ptx_rows) to mix in")
        self.model, self.tokenizer, self.template, self.config = model, tokenizer, template, config
        self.reward_fn, self.report = reward_fn, report
        self.reference = jax.tree.map(jnp.asarray, sft_params)
        self.trained = {"policy": self.reference, "value_head": init_head(model.config.d_model)}
        steps = config.updates * config.epochs * config.minibatches
        self.optimizer = FitConfig(steps=steps, lr=config.lr, warmup_steps=0).optimizer()
        self.opt_state = self.optimizer.init(self.trained)
        self.generator = make_generator(model, self.reference, Sampling(config.temperature))
        self.ptx = None if ptx_rows is None else epoch_batches(ptx_rows, ptx_batch_size, config.seed)
        self._score = jax.jit(self._score_fn)
        self._step = update_step(self._loss_fn, self.optimizer)

    def _policy_outputs(self, trained, inputs_BT, targets_BT):
        logits_BTV, hidden_BTD = logits_and_hidden(self.model, trained["policy"], inputs_BT)
        return token_logprobs(logits_BTV, targets_BT), apply_head(trained["value_head"], hidden_BTD)

    def _score_fn(self, trained, rows):
        logp_BT, values_BT = self._policy_outputs(trained, rows["inputs"], rows["targets"])
        ref_logits = self.model.apply({"params": self.reference}, rows["inputs"])
        return logp_BT, values_BT, token_logprobs(ref_logits, rows["targets"])

    def _loss_fn(self, trained, batches):
        batch, ptx_batch = batches
        logp_BT, values_BT = self._policy_outputs(trained, batch["inputs"], batch["targets"])
        losses = ppo_losses(logp_BT, values_BT, batch, self.config)
        total = losses["policy_loss"] + self.config.vf_coef * losses["value_loss"]
        if ptx_batch is not None:
            ptx_nll, _ = masked_mean_nll(self.model, trained["policy"], ptx_batch)
            total, losses = total + self.config.ptx_coef * ptx_nll, {**losses, "ptx_loss": ptx_nll}
        return total, losses

    def rollout(self, update: int) -> Rollout:
        """Prompts for this update and the policy's sampled responses (KV-cache decoding)."""
        cfg = self.config
        prompts = datasets.task_prompts(cfg.prompts_per_update, cfg.seed * 1000 + update)
        prompt_ids = [self.template.prompt_ids(self.tokenizer, prompt) for prompt in prompts]
        stop = self.template.stop_ids(self.tokenizer)
        self.generator.params = self.trained["policy"]
        new = self.generator.generate(prompt_ids, cfg.max_new_tokens, seed=cfg.seed * 1000 + update, stop_ids=stop)
        responses = [ids + list(stop) if len(ids) < cfg.max_new_tokens else ids for ids in new]
        texts = [self.tokenizer.decode(ids).strip() for ids in new]
        return Rollout(prompts, texts, rollout_rows(prompt_ids, responses, cfg.seq_len))

    def update(self, update: int) -> dict[str, float]:
        """One rollout and its PPO epochs; the update's metrics."""
        cfg = self.config
        rollout = self.rollout(update)
        scores = np.asarray(self.reward_fn(rollout), np.float32)
        rows = rollout.rows
        logp, values, ref_logp = (np.asarray(x) for x in self._score(self.trained, rows))
        mask = rows["weights"]
        kl = (logp - ref_logp) * mask
        rewards = -cfg.kl_coef * kl
        rewards[np.arange(len(scores)), rows["last"]] += scores
        advantages, returns = gae(rewards, values * mask, mask, cfg.gamma, cfg.lam)
        batch = {**rows, "old_logp": logp, "old_values": values * mask,
                 "advantages": whiten(advantages, mask), "returns": returns}
        losses = self._optimise(batch, update)
        return {"update": update, "reward": float(scores.mean()), "kl": float(kl.sum(axis=1).mean()),
                **self.report(rollout), **losses}

    def _optimise(self, batch: dict[str, np.ndarray], update: int) -> dict[str, float]:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed * 1000 + update)
        size = cfg.prompts_per_update // cfg.minibatches
        last = {}
        for _ in range(cfg.epochs):
            order = rng.permutation(cfg.prompts_per_update)
            for start in range(0, cfg.prompts_per_update, size):
                take = order[start:start + size]
                minibatch = {k: v[take] for k, v in batch.items()}
                ptx_batch = None if self.ptx is None or cfg.ptx_coef == 0 else next(self.ptx)
                self.trained, self.opt_state, _, last = self._step(self.trained, self.opt_state,
                                                                   (minibatch, ptx_batch))
        return {k: float(v) for k, v in last.items()}

    def train(self, on_log: Callable[[dict], None] | None = None) -> list[dict[str, float]]:
        history = []
        for update in range(1, self.config.updates + 1):
            record = self.update(update)
            history.append(record)
            if on_log is not None:
                on_log(record)
        return history


def ppo_losses(logp_BT: jax.Array, values_BT: jax.Array, batch: dict, config: PPOConfig) -> dict[str, jax.Array]:
    """Clipped policy loss and clipped value loss, each a mean over response tokens."""
    mask_BT = batch["weights"]
    count = jnp.maximum(mask_BT.sum(), 1.0)
    ratio_BT = jnp.exp(logp_BT - batch["old_logp"])
    advantages_BT = batch["advantages"]
    clipped_BT = jnp.clip(ratio_BT, 1 - config.clip, 1 + config.clip)
    policy_BT = jnp.maximum(-advantages_BT * ratio_BT, -advantages_BT * clipped_BT)
    old_BT = batch["old_values"]
    values_clipped_BT = old_BT + jnp.clip(values_BT - old_BT, -config.value_clip, config.value_clip)
    value_BT = 0.5 * jnp.maximum(jnp.square(values_BT - batch["returns"]),
                                 jnp.square(values_clipped_BT - batch["returns"]))
    return {"policy_loss": (policy_BT * mask_BT).sum() / count,
            "value_loss": (value_BT * mask_BT).sum() / count,
            "clip_fraction": ((jnp.abs(ratio_BT - 1) > config.clip) * mask_BT).sum() / count}


def reward_model_fn(model: nn.Module, reward_params: dict) -> RewardFn:
    """The reward model (`lmjax.posttrain.reward`) as PPO's judge, as in InstructGPT."""
    score = jax.jit(lambda rows: rewards(model, reward_params, rows))
    return lambda rollout: np.asarray(score({"inputs": rollout.rows["inputs"], "last": rollout.rows["last"]}))
