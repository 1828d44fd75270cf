"""Post-training stories260K on the verifiable task: every figure of docs/posttraining.md.

    python experiments/posttrain_stories.py --out runs/posttrain_stories

Steps (all seeded): sample stories from stories260K and keep those that use a task word
as SFT data (written as jsonl, read back through the loader users' files take); SFT, full
and LoRA; preference pairs from the SFT model's samples judged by the task reward; a reward
model on them (held-out accuracy); DPO (full and LoRA) and PPO from the SFT model, each with
the SFT model as frozen reference; then every model is sampled once per held-out prompt and
judged: word-use rate, mean reward and KL to the SFT model. Writes results.json and the
figures into --out, and with --docs also copies the figures into docs/posttraining/.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import time

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
    parser.add_argument("--rm-steps", type=int, default=60)
    parser.add_argument("--ppo-updates", type=int, default=60)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--ppo-reward", choices=("task", "rm"), default="task")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from lmjax.posttrain import datasets, dpo, lora, ppo, reward, sft
    from lmjax.posttrain.evaluate import evaluate_task
    from lmjax.posttrain.template import ChatTemplate
    from lmjax.posttrain.trainer import FitConfig
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

    examples = datasets.build_sft_examples(make_generator(model, base, Sampling(1.0)), tokenizer, template,
                                           args.stories, 64, seed=0)
    datasets.write_sft(out / "sft.jsonl", examples)
    examples = datasets.read_sft(out / "sft.jsonl")
    log(f"SFT data: {len(examples)} of {args.stories} stories use a task word")
    rows = sft.sft_rows(examples, tokenizer, template, seq_len)
    sft_fit = FitConfig(steps=args.sft_steps, batch_size=8, lr=2e-3, warmup_steps=10, log_every=10)
    sft_params, sft_history, _ = sft.train_sft(model, base, rows, sft_fit)
    log(f"SFT: loss {sft_history[0]['loss']:.3f} -> {sft_history[-1]['loss']:.3f}")
    lora_tuning = lora.LoraTuning(lora.LoraConfig(rank=args.lora_rank, alpha=2.0 * args.lora_rank))
    lora_fit = FitConfig(steps=args.sft_steps, batch_size=8, lr=1e-2, warmup_steps=10, log_every=10)
    lora_params, lora_history, lora_trained = sft.train_sft(model, base, rows, lora_fit, lora_tuning)
    lora.save_adapters(out / "lora_sft", lora_trained["lora"], lora_tuning.config)
    log(f"LoRA SFT: loss {lora_history[0]['loss']:.3f} -> {lora_history[-1]['loss']:.3f}")

    pairs = datasets.build_preference_pairs(make_generator(model, sft_params, Sampling(1.0)), tokenizer, template,
                                            args.pair_prompts, 4, 48, seed=1)
    datasets.write_preferences(out / "preferences.jsonl", pairs)
    pairs = datasets.read_preferences(out / "preferences.jsonl")
    held_out = max(1, len(pairs) // 8)
    train_rows = dpo.pair_rows(pairs[held_out:], tokenizer, template, seq_len)
    test_rows = dpo.pair_rows(pairs[:held_out], tokenizer, template, seq_len)
    log(f"preference pairs: {len(pairs)} ({held_out} held out)")

    rm_fit = FitConfig(steps=args.rm_steps, batch_size=16, lr=3e-4, warmup_steps=5, weight_decay=0.1, log_every=10)
    rm_params, rm_history = reward.train_reward_model(
        model, reward.init_reward_model(sft_params, model.config.d_model), train_rows, rm_fit)
    rm_accuracy = reward.pair_accuracy(model, rm_params, test_rows)
    log(f"reward model: held-out accuracy {rm_accuracy:.3f}")

    dpo_fit = FitConfig(steps=args.dpo_steps, batch_size=16, lr=1e-4, warmup_steps=5, log_every=10)
    dpo_config = dpo.DPOConfig(beta=0.1)
    dpo_params, dpo_history, _ = dpo.train_dpo(model, sft_params, sft_params, train_rows, dpo_fit, dpo_config)
    log(f"DPO: loss {dpo_history[0]['loss']:.3f} -> {dpo_history[-1]['loss']:.3f}")
    dpo_lora_fit = FitConfig(steps=args.dpo_steps, batch_size=16, lr=1e-3, warmup_steps=5, log_every=10)
    dpo_lora_params, dpo_lora_history, _ = dpo.train_dpo(model, sft_params, sft_params, train_rows, dpo_lora_fit,
                                                         dpo_config, lora_tuning)
    log(f"LoRA DPO: loss {dpo_lora_history[0]['loss']:.3f} -> {dpo_lora_history[-1]['loss']:.3f}")

    reward_fn = ppo.task_reward if args.ppo_reward == "task" else ppo.reward_model_fn(model, rm_params)
    ppo_config = ppo.PPOConfig(updates=args.ppo_updates, prompts_per_update=32, max_new_tokens=48, seq_len=72,
                               lr=3e-4, kl_coef=0.05, epochs=2, minibatches=2)
    trainer = ppo.PPOTrainer(model, sft_params, tokenizer, template, ppo_config, reward_fn)
    ppo_history = trainer.train(on_log=lambda r: log(
        f"PPO update {r['update']}: reward {r['reward']:.3f} KL {r['kl']:.3f} rate {r['word_use_rate']:.3f}"))
    ppo_params = trainer.trained["policy"]

    prompts = datasets.task_prompts(args.eval_prompts, seed=12345)
    models = {"base": base, "SFT": sft_params, "LoRA SFT": lora_params, "DPO": dpo_params,
              "LoRA DPO": dpo_lora_params, "PPO": ppo_params}
    evaluation = {name: evaluate_task(model, params, tokenizer, template, prompts, 48, seed=99,
                                      reference=sft_params) for name, params in models.items()}
    for name, result in evaluation.items():
        log(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))
    results = {
        "sft_examples": len(examples), "pairs": len(pairs), "held_out_pairs": held_out,
        "rm_accuracy": rm_accuracy, "evaluation": evaluation,
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
        for figure in figures:
            shutil.copy(figure, target / figure.name)
    log(f"wrote {out}/results.json and {len(figures)} figures")


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
    axes[2].axhline(results["rm_accuracy"], color="k", ls="--", label="held-out")
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
