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

On the engine (`lmjax.posttrain.engine`) the rollout phase is the batch source: `RolloutSource`
is shown the current parameters before each step and, when an update's minibatches are used
up, samples, scores and estimates advantages with the parameters at that update's start. Its
randomness is fixed by (train.seed, update index), and its checkpointed state holds the
update's rows while they are in use, so a resumed run continues bitwise as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lmjax.config import TrainConfig
from lmjax.decoding import Sampling, make_generator
from lmjax.errors import ConfigError
from lmjax.posttrain import datasets
from lmjax.posttrain.dpo import side
from lmjax.posttrain.engine import Method, run_config, run_method
from lmjax.posttrain.examples import Turn
from lmjax.posttrain.gae import gae, whiten
from lmjax.posttrain.heads import apply_head, init_head
from lmjax.posttrain.packing import epoch_batches
from lmjax.posttrain.reward import rewards
from lmjax.posttrain.sequences import logits_and_hidden, masked_mean_nll, token_logprobs
from lmjax.posttrain.template import ChatTemplate
from lmjax.runs.layout import PathLike
from lmjax.tokenizers import Tokenizer


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO's own settings; the optimizer, the seed and the steps' bookkeeping are `TrainConfig`'s
    (`train_config` derives steps and batch size from these)."""

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
    ptx_coef: float = 0.0
    max_kl: float = 0.0  # > 0: stop when an update's samples are further from the reference (nats per response)

    def __post_init__(self) -> None:
        if self.prompts_per_update % self.minibatches:
            raise ConfigError(f"prompts_per_update={self.prompts_per_update} must split into "
                              f"minibatches={self.minibatches} equal parts")
        if self.max_new_tokens >= self.seq_len:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens} must be below seq_len={self.seq_len}")

    @property
    def steps_per_update(self) -> int:
        return self.epochs * self.minibatches

    def train_config(self, train: TrainConfig) -> TrainConfig:
        """`train` with one optimizer step per minibatch of every epoch of every update, logged
        (and checkpointable) at update boundaries."""
        per_update = self.steps_per_update
        return dataclasses.replace(train, steps=self.updates * per_update, log_every=per_update,
                                   global_batch_size=self.prompts_per_update // self.minibatches,
                                   eval_every=self.updates * per_update)


class KLLimitReached(Exception):
    """An update's samples drifted further from the reference than `PPOConfig.max_kl`."""

    def __init__(self, update: int, kl: float, limit: float) -> None:
        super().__init__(f"stopped at update {update}: its samples are {kl:.2f} nats from the reference "
                         f"per response, above --max-kl {limit:g}")
        self.update, self.kl, self.limit = update, kl, limit


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


class PPOModel:
    """The policy with its value head ({"policy", "value_head"}) against the frozen reference:
    the scores of a rollout and the minibatch loss."""

    def __init__(self, model: nn.Module, reference: Any, config: PPOConfig) -> None:
        self.model, self.reference, self.config = model, reference, config

    def policy_outputs(self, trained, inputs_BT, targets_BT):
        logits_BTV, hidden_BTD = logits_and_hidden(self.model, trained["policy"], inputs_BT)
        return token_logprobs(logits_BTV, targets_BT), apply_head(trained["value_head"], hidden_BTD)

    def score(self, trained, rows):
        logp_BT, values_BT = self.policy_outputs(trained, rows["inputs"], rows["targets"])
        ref_logits = self.model.apply({"params": self.reference}, rows["inputs"])
        return logp_BT, values_BT, token_logprobs(ref_logits, rows["targets"])

    def loss(self, trained, batch):
        """Clipped policy + value loss (+ PPO-ptx); the update's statistics ride along as
        `stat_*` columns and come out as metrics."""
        logp_BT, values_BT = self.policy_outputs(trained, batch["inputs"], batch["targets"])
        losses = ppo_losses(logp_BT, values_BT, batch, self.config)
        total = losses["policy_loss"] + self.config.vf_coef * losses["value_loss"]
        if "ptx_inputs" in batch:
            ptx_nll, _ = masked_mean_nll(self.model, trained["policy"], side(batch, "ptx"))
            total, losses = total + self.config.ptx_coef * ptx_nll, {**losses, "ptx_loss": ptx_nll}
        stats = {key[len("stat_"):]: jnp.mean(value) for key, value in batch.items() if key.startswith("stat_")}
        return total, 1.0, {**losses, **stats}


class RolloutSource:
    """PPO's rollout phase as the engine's batch source: one minibatch per step; a new rollout
    (with the parameters `observe` last showed) when the update's minibatches are used up."""

    def __init__(self, ppo_model: PPOModel, tokenizer: Tokenizer, template: ChatTemplate, seed: int,
                 reward_fn: RewardFn = task_reward, report: ReportFn = word_use_rate,
                 ptx_rows: dict[str, np.ndarray] | None = None, ptx_batch_size: int = 8) -> None:
        config = ppo_model.config
        self.ppo, self.tokenizer, self.template, self.seed = ppo_model, tokenizer, template, seed
        self.config, self.reward_fn, self.report = config, reward_fn, report
        self.reference = ppo_model.reference
        self.ptx = (None if ptx_rows is None or config.ptx_coef == 0
                    else epoch_batches(ptx_rows, ptx_batch_size, seed))
        self.generator = make_generator(ppo_model.model, self.reference, Sampling(config.temperature))
        self._score = jax.jit(ppo_model.score)
        self.trained, self.update, self.position, self.batch, self.order = None, 0, 0, None, []

    def __iter__(self) -> RolloutSource:
        return self

    def observe(self, trained: Any) -> None:
        self.trained = trained

    def __next__(self) -> dict[str, np.ndarray]:
        if self.batch is None or self.position == len(self.order):
            self.update += 1
            self.batch, self.position = self._rollout_batch(self.update), 0
            self.order = minibatch_order(self.config, self.seed, self.update)
        take = self.order[self.position]
        self.position += 1
        minibatch = {k: v[take] for k, v in self.batch.items()}
        if self.ptx is not None:
            minibatch.update({f"ptx_{k}": v for k, v in next(self.ptx).items()})
        return minibatch

    def rollout(self, update: int) -> Rollout:
        """Prompts for this update and the policy's sampled responses (KV-cache decoding)."""
        cfg, key = self.config, self.seed * 1000 + update
        prompts = datasets.task_prompts(cfg.prompts_per_update, key)
        prompt_ids = [self.template.prompt_ids(self.tokenizer, prompt) for prompt in prompts]
        stop = self.template.stop_ids(self.tokenizer)
        self.generator.params = self.trained["policy"]
        new = self.generator.generate(prompt_ids, cfg.max_new_tokens, seed=key, stop_ids=stop)
        responses = [ids + list(stop) if len(ids) < cfg.max_new_tokens else ids for ids in new]
        texts = [self.tokenizer.decode(ids).strip() for ids in new]
        return Rollout(prompts, texts, rollout_rows(prompt_ids, responses, cfg.seq_len))

    def _rollout_batch(self, update: int) -> dict[str, np.ndarray]:
        """One rollout scored: per-token rewards, GAE advantages, and the update's statistics."""
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
        stats = {"update": update, "reward": float(scores.mean()), "kl": float(kl.sum(axis=1).mean()),
                 **self.report(rollout)}
        if 0 < cfg.max_kl < stats["kl"]:
            raise KLLimitReached(update, stats["kl"], cfg.max_kl)
        columns = {f"stat_{name}": np.full(len(scores), value, np.float32) for name, value in stats.items()}
        return {**rows, "old_logp": logp, "old_values": values * mask,
                "advantages": whiten(advantages, mask), "returns": returns, **columns}

    def get_state(self) -> dict:
        """The update and minibatch reached; mid-update also the update's rows (JSON lists),
        which were made with parameters a resumed run no longer has."""
        mid_update = self.batch is not None and self.position < len(self.order)
        return {"update": self.update, "position": self.position,
                "rows": encode_arrays(self.batch) if mid_update else None,
                "ptx": None if self.ptx is None else self.ptx.get_state()}

    def set_state(self, state: dict) -> None:
        self.update, self.position = int(state["update"]), int(state["position"])
        self.batch = None if state["rows"] is None else decode_arrays(state["rows"])
        self.order = minibatch_order(self.config, self.seed, self.update) if self.batch is not None else []
        if self.ptx is not None:
            self.ptx.set_state(state["ptx"])


def minibatch_order(config: PPOConfig, seed: int, update: int) -> list[np.ndarray]:
    """The rows of each minibatch of each epoch of `update`: a seeded shuffle per epoch."""
    rng = np.random.default_rng(seed * 1000 + update)
    size = config.prompts_per_update // config.minibatches
    order = []
    for _ in range(config.epochs):
        permutation = rng.permutation(config.prompts_per_update)
        order += [permutation[start:start + size] for start in range(0, config.prompts_per_update, size)]
    return order


def encode_arrays(arrays: dict[str, np.ndarray]) -> dict:
    """Arrays as JSON (float32 and int32 values round-trip exactly through Python numbers)."""
    return {name: {"dtype": str(value.dtype), "shape": list(value.shape), "values": value.ravel().tolist()}
            for name, value in arrays.items()}


def decode_arrays(encoded: dict) -> dict[str, np.ndarray]:
    return {name: np.asarray(item["values"], item["dtype"]).reshape(item["shape"])
            for name, item in encoded.items()}


def ppo_method(model: nn.Module, sft_params: Any, tokenizer: Tokenizer, template: ChatTemplate,
               config: PPOConfig, train: TrainConfig, reward_fn: RewardFn = task_reward,
               report: ReportFn = word_use_rate, ptx_rows: dict[str, np.ndarray] | None = None,
               ptx_batch_size: int = 8) -> Method:
    """PPO for the engine (`train` from `config.train_config`): the policy and a zero value
    head train, the SFT parameters are the frozen reference, rollouts are the batches."""
    if config.ptx_coef > 0 and ptx_rows is None:
        raise ConfigError("ptx_coef > 0 needs pretraining rows (ptx_rows) to mix in")
    reference = jax.tree.map(jnp.asarray, sft_params)
    ppo_model = PPOModel(model, reference, config)
    source = RolloutSource(ppo_model, tokenizer, template, train.seed, reward_fn, report, ptx_rows, ptx_batch_size)
    return Method(name="ppo", trained={"policy": reference, "value_head": init_head(model.config.d_model)},
                  loss=ppo_model.loss, batches=source,
                  batch_shape=(config.prompts_per_update // config.minibatches, config.seq_len))


def train_ppo(method: Method, train: TrainConfig, run_dir: PathLike) -> tuple[Any, list[dict]]:
    """A `ppo_method` trained as a run in `run_dir`: the final {"policy", "value_head"} and
    the records logged once per update."""
    trained, result = run_method(method, run_config(method.batches.ppo.model.config, train, run_dir))
    return trained, result.records


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
