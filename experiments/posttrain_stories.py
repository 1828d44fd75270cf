"""Post-training stories260K on the verifiable task: every figure of docs/posttraining.md.

    python experiments/posttrain_stories.py --out runs/posttrain_stories

Steps (all seeded): sample stories from stories260K and keep those that use a task word
as SFT data (written as jsonl, read back through the loader users' files take); SFT, full
and LoRA; preference pairs from the SFT model's samples judged by the task reward; a reward
model on every differing pair of an instruction's samples plus cross-prompt pairs (held-out
accuracy on instructions of training words and on words it never saw, with standard errors); DPO (full and LoRA) and PPO from the SFT model, each with
the SFT model as frozen reference; then every model is sampled once per held-out prompt and
judged: word-use rate, mean reward and KL to the SFT model. Writes results.json and the
figures into --out, and with --docs also copies the figures and results.json into docs/posttraining/.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import time

RM_STEPS, RM_READS, RM_BATCH, RM_LR, RM_WEIGHT_DECAY = 300, "mean", 32, 1e-3, 0.0
RM_SEQ_LEN = 64  # prompt (about 10 tokens) + 48 sampled tokens + the end token
RM_CROSS = 1  # cross-prompt pairs per sample that uses its word
RM_HELD_OUT_WORDS = 6  # of task.WORDS; their instructions never appear in the reward model's training data
DATA = pathlib.Path(os.environ.get("LMJAX_DATA_DIR", "../shared/data")) / "stories260K"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/posttrain_stories")
    parser.add_argument("--docs", action="store_true", help="copy the figures into docs/posttraining/")
    parser.add_argument("--stories", type=int, default=1024, help="unconditional samples for SFT data")
    parser.add_argument("--pair-prompts", type=int, default=640)
    parser.add_argument("--eval-prompts", type=int, default=256)
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--dpo-steps", type=int, default=60)
    parser.add_argument("--rm-steps", type=int, default=RM_STEPS)
    parser.add_argument("--rm-reads", default=RM_READS, help="what the reward head reads: last, mean, last+mean")
    parser.add_argument("--ppo-updates", type=int, default=60)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--ppo-reward", choices=("task", "rm"), default="task")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from lmjax.posttrain import datasets, dpo, lora, ppo, sft
    from lmjax.config import TrainConfig
    from lmjax.posttrain.template import ChatTemplate
    from stories_task import build_sft_examples, evaluate_task
    from lmjax.decoding import Sampling, make_generator
    from lmjax.runs.open import open_run
    from lmjax.train.state import count_params

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def log(message):
        print(f"[{time.perf_counter() - start:6.0f}s] {message}", flush=True)

    run = open_run(DATA / "stories260K.bin", tokenizer=DATA / "tok512.model")
    model, base, tokenizer, template = run.model, run.params, run.tokenizer, ChatTemplate()
    seq_len = 128

    examples = build_sft_examples(make_generator(model, base, Sampling(1.0)), tokenizer, template,
                                           args.stories, 64, seed=0)
    datasets.write_sft(out / "sft.jsonl", examples)
    examples = datasets.read_sft(out / "sft.jsonl")
    log(f"SFT data: {len(examples)} of {args.stories} stories use a task word")
    rows = sft.sft_rows(examples, tokenizer, template, seq_len)
    sft_fit = fit(args.sft_steps, 8, 2e-3, 10)
    sft_params, sft_history, _ = sft.train_sft(model, base, rows, sft_fit, out / "runs" / "sft")
    log(f"SFT: loss {sft_history[0]['loss']:.3f} -> {sft_history[-1]['loss']:.3f}")
    lora_tuning = lora.LoraTuning(lora.LoraConfig(rank=args.lora_rank, alpha=2.0 * args.lora_rank))
    lora_fit = fit(args.sft_steps, 8, 1e-2, 10)
    lora_params, lora_history, lora_trained = sft.train_sft(model, base, rows, lora_fit, out / "runs" / "lora_sft",
                                                            lora_tuning)
    lora.save_adapters(out / "lora_sft", lora_trained["lora"], lora_tuning.config)
    log(f"LoRA SFT: loss {lora_history[0]['loss']:.3f} -> {lora_history[-1]['loss']:.3f}")

    samples = datasets.sample_preference_data(make_generator(model, sft_params, Sampling(1.0)), tokenizer,
                                              template, args.pair_prompts, 4, 48, seed=1)
    datasets.write_preferences(out / "preferences.jsonl", datasets.best_worst_pairs(samples))
    pairs = datasets.read_preferences(out / "preferences.jsonl")
    train_rows = dpo.pair_rows(pairs, tokenizer, template, seq_len)
    log(f"preference pairs (best vs worst of 4 samples): {len(pairs)} of {args.pair_prompts} prompts")

    rm_result, rm_params, rm_history = reward_model(args, samples, model, sft_params, tokenizer, template, out, log)

    dpo_fit = fit(args.dpo_steps, 16, 1e-4, 5)
    dpo_config = dpo.DPOConfig(beta=0.1)
    dpo_params, dpo_history, _ = dpo.train_dpo(model, sft_params, sft_params, train_rows, dpo_fit,
                                               out / "runs" / "dpo", dpo_config)
    log(f"DPO: loss {dpo_history[0]['loss']:.3f} -> {dpo_history[-1]['loss']:.3f}")
    dpo_lora_fit = fit(args.dpo_steps, 16, 1e-3, 5)
    dpo_lora_params, dpo_lora_history, _ = dpo.train_dpo(model, sft_params, sft_params, train_rows, dpo_lora_fit,
                                                         out / "runs" / "lora_dpo", dpo_config, lora_tuning)
    log(f"LoRA DPO: loss {dpo_lora_history[0]['loss']:.3f} -> {dpo_lora_history[-1]['loss']:.3f}")

    reward_fn = ppo.task_reward if args.ppo_reward == "task" else ppo.reward_model_fn(model, rm_params)
    ppo_config = ppo.PPOConfig(updates=args.ppo_updates, prompts_per_update=32, max_new_tokens=48, seq_len=72,
                               kl_coef=0.05, epochs=2, minibatches=2)
    ppo_train = ppo_config.train_config(TrainConfig(lr=3e-4, warmup_steps=0, weight_decay=0.0))
    method = ppo.ppo_method(model, sft_params, tokenizer, template, ppo_config, ppo_train, reward_fn)
    ppo_trained, ppo_history = ppo.train_ppo(method, ppo_train, out / "runs" / "ppo")
    for r in ppo_history:
        log(f"PPO update {r['update']:.0f}: reward {r['reward']:.3f} KL {r['kl']:.3f} rate {r['word_use_rate']:.3f}")
    ppo_params = ppo_trained["policy"]

    prompts = datasets.task_prompts(args.eval_prompts, seed=12345)
    models = {"base": base, "SFT": sft_params, "LoRA SFT": lora_params, "DPO": dpo_params,
              "LoRA DPO": dpo_lora_params, "PPO": ppo_params}
    evaluation = {name: evaluate_task(model, params, tokenizer, template, prompts, 48, seed=99,
                                      reference=sft_params) for name, params in models.items()}
    for name, result in evaluation.items():
        log(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))
    results = {
        "sft_examples": len(examples), "pairs": len(pairs), "reward_model": rm_result, "evaluation": evaluation,
        "params": {"full": count_params(base),
                   "lora": lora_tuning.trainable_count(lora_trained)},
        "history": {"sft": sft_history, "lora_sft": lora_history, "rm": rm_history, "dpo": dpo_history,
                    "lora_dpo": dpo_lora_history, "ppo": ppo_history},
        "settings": vars(args), "seconds": time.perf_counter() - start,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    figures = plot(results, out)
    if args.docs:
        target = pathlib.Path("docs/posttraining")
        target.mkdir(parents=True, exist_ok=True)
        for figure in [*figures, out / "results.json"]:  # the raw numbers beside the figures
            shutil.copy(figure, target / figure.name)
    log(f"wrote {out}/results.json and {len(figures)} figures")


def fit(steps: int, batch_size: int, lr: float, warmup: int, weight_decay: float = 0.0):
    """A run's optimizer and bookkeeping (`lmjax.config.TrainConfig`), logged every 10 steps."""
    from lmjax.config import TrainConfig

    return TrainConfig(steps=steps, global_batch_size=batch_size, lr=lr, warmup_steps=min(warmup, steps - 1),
                        weight_decay=weight_decay, log_every=10, eval_every=steps)


def reward_model(args, samples, model, sft_params, tokenizer, template, out, log):
    """The reward model on every differing pair of a prompt's samples plus cross-prompt pairs
    (another prompt's sample lacking the word as rejected), fitted on training prompts and
    scored on two held-out sets: prompts of training words (new samples of instructions seen
    in training) and prompts of held-out words (instructions it never saw)."""
    from lmjax.posttrain import datasets, dpo, reward

    train, seen, unseen, unseen_words = datasets.split_by_word(samples, RM_HELD_OUT_WORDS, 0.125, seed=2)
    train_samples = samples.subset(train)
    within, cross = datasets.all_pairs(train_samples), datasets.cross_prompt_pairs(train_samples, RM_CROSS, seed=3)
    datasets.write_preferences(out / "rm_train.jsonl", within + cross)
    train_pairs = datasets.read_preferences(out / "rm_train.jsonl")
    log(f"reward model: {len(train_pairs)} training pairs ({len(within)} within a prompt, {len(cross)} cross-prompt) "
        f"from {len(train)} prompts; held out: {len(seen)} prompts of training words, {len(unseen)} of the words "
        f"{', '.join(unseen_words)}")
    train_config = fit(args.rm_steps, RM_BATCH, RM_LR, 10, RM_WEIGHT_DECAY)
    rows = dpo.pair_rows(train_pairs, tokenizer, template, RM_SEQ_LEN)
    rm_params, history = reward.train_reward_model(
        model, reward.init_reward_model(sft_params, model.config.d_model, args.rm_reads), rows, train_config,
        out / "runs" / "rm")
    for r in history:
        log(f"RM step {r['step']}: loss {r['loss']:.3f} accuracy {r['accuracy']:.3f}")
    result = {"train_pairs": len(train_pairs), "within_prompt_pairs": len(within), "cross_prompt_pairs": len(cross),
              "train_prompts": len(train), "unseen_words": list(unseen_words), "reads": args.rm_reads}
    for name, indices in (("seen_words", seen), ("unseen_words", unseen)):
        groups = [datasets.all_pairs(samples.subset([i])) for i in indices]
        held_out = [pair for group in groups for pair in group]
        datasets.write_preferences(out / f"rm_held_out_{name}.jsonl", held_out)
        held_out = datasets.read_preferences(out / f"rm_held_out_{name}.jsonl")
        score = pair_scores(reward, model, rm_params, dpo.pair_rows(held_out, tokenizer, template, RM_SEQ_LEN))
        result[name] = accuracy_with_errors(score, [len(group) for group in groups])
        log(f"reward model, held-out prompts of {name.replace('_', ' ')}: accuracy {result[name]['accuracy']:.3f} "
            f"on {result[name]['pairs']} pairs from {result[name]['prompts']} prompts "
            f"(standard error {result[name]['se']:.3f}; {result[name]['se_by_prompt']:.3f} by prompt)")
    return result, rm_params, history


def pair_scores(reward, model, rm_params, rows):
    """1 where the reward model orders a pair correctly, else 0."""
    import jax

    from lmjax.posttrain.dpo import side
    from lmjax.posttrain.sequences import score_in_batches

    score = jax.jit(lambda batch: reward.rewards(model, rm_params, batch))
    chosen, rejected = (score_in_batches(score, side(rows, name)) for name in ("chosen", "rejected"))
    return (chosen > rejected).astype(float)


def accuracy_with_errors(correct, group_sizes):
    """Accuracy with its binomial standard error and one clustered by prompt (a prompt's
    pairs share samples, so they are not independent)."""
    import numpy as np

    n, p = len(correct), float(np.mean(correct))
    bounds = np.cumsum([0] + list(group_sizes))
    sums = np.array([correct[a:b].sum() - (b - a) * p for a, b in zip(bounds[:-1], bounds[1:]) if b > a])
    g = len(sums)
    return {"accuracy": p, "pairs": n, "prompts": g, "se": float(np.sqrt(p * (1 - p) / n)),
            "se_by_prompt": float(np.sqrt((sums ** 2).sum() * g / max(g - 1, 1)) / n)}


def plot(results: dict, out: pathlib.Path) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluation = results["evaluation"]
    names = list(evaluation)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].bar(names, [evaluation[n]["word_use_rate"] for n in names], color="tab:blue")
    axes[0].set_ylabel("word-use rate (held-out prompts)")
    axes[1].bar(names, [evaluation[n]["kl"] for n in names], color="tab:gray")
    axes[1].set_ylabel("KL to the SFT model (nats / response)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    rates = out / "word_use_rate.png"
    fig.savefig(rates, dpi=110)

    ppo = results["history"]["ppo"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, key, label in zip(axes, ("reward", "kl", "word_use_rate"), ("task reward", "KL to SFT", "word-use rate")):
        ax.plot([r["update"] for r in ppo], [r[key] for r in ppo], marker="o", ms=3)
        ax.set_xlabel("PPO update")
        ax.set_title(label)
    fig.tight_layout()
    curves = out / "ppo_curves.png"
    fig.savefig(curves, dpi=110)

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    history = results["history"]
    for key, label in (("sft", "full SFT"), ("lora_sft", "LoRA SFT")):
        axes[0].plot([r["step"] for r in history[key]], [r["loss"] for r in history[key]], label=label)
    axes[0].set_title("SFT response loss")
    axes[0].legend()
    for key, label in (("dpo", "DPO"), ("lora_dpo", "LoRA DPO")):
        axes[1].plot([r["step"] for r in history[key]], [r["reward_margin"] for r in history[key]], label=label)
    axes[1].set_title("DPO reward margin (train batch)")
    axes[1].legend()
    axes[2].plot([r["step"] for r in history["rm"]], [r["accuracy"] for r in history["rm"]])
    rm = results["reward_model"]
    axes[2].axhline(rm["seen_words"]["accuracy"], color="k", ls="--", label="held-out prompts, training words")
    axes[2].axhline(rm["unseen_words"]["accuracy"], color="tab:red", ls=":", label="held-out words")
    axes[2].axhline(0.5, color="gray", lw=0.5)
    axes[2].set_title("reward model accuracy")
    axes[2].legend()
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout()
    training = out / "training_curves.png"
    fig.savefig(training, dpi=110)
    plt.close("all")
    return [rates, curves, training]


if __name__ == "__main__":
    main()
