"""`lmjax posttrain sft|rm|dpo|ppo`: post-train any model `open_run` opens.

Every stage reads a model (--from: a run, an export, a llama2.c .bin with --tokenizer, or an
earlier stage's output) and trains it on the training engine with --out as its run directory
(checkpoints, metrics.jsonl, TensorBoard, the writer lock: the same command again resumes it),
then writes there an export that the next stage and `lmjax generate` read. Data files are
jsonl in the common layouts (docs/posttraining.md).
"""

from __future__ import annotations

import argparse


# PPO's own defaults: at the shared --lr default (1e-3) the documented command collapsed
# (word-use rate 0.44 -> 0.0 at updates 18-20, KL 9-16 nats); at 3e-4 it held a KL near 5 for
# 60 updates (docs/posttraining.md), and a KL past 8 ends the run.
PPO_LR, PPO_MAX_KL = 3e-4, 8.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "posttrain", help="post-train a model: SFT, reward model, DPO/IPO, PPO (LoRA optional)",
        description="Post-training stages; each writes an lmjax export to --out (see docs/posttraining.md).",
    )
    stages = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, help_text in (("sft", "supervised fine-tuning on {prompt,response} or chat jsonl"),
                            ("rm", "a reward model on {prompt,chosen,rejected} jsonl"),
                            ("dpo", "DPO or IPO on {prompt,chosen,rejected} jsonl"),
                            ("ppo", "PPO on the story-word task (task judge or a reward model)")):
        stage = stages.add_parser(name, help=help_text, description=help_text)
        _common(stage)
        _STAGE_ARGS[name](stage)
        stage.set_defaults(func=run)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, help="the model to start from")
    parser.add_argument("--tokenizer",
                        help="SentencePiece .model, tokenizer.json or tokenizer dir (llama2.c .bin needs it)")
    parser.add_argument("--out", required=True, help="the run directory: new, or this same run to resume")
    parser.add_argument("--template", help="chat template yaml (system, user, assistant, end_token); "
                        "default: the --from model's saved one, else '{content}\\n' turns ending with BOS")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=10, help="steps between metrics.jsonl records")


def _checkpoint_every(parser: argparse.ArgumentParser, default: int = 50, unit: str = "steps") -> None:
    parser.add_argument("--checkpoint-every", type=int, default=default,
                        help=f"{unit} between checkpoints (a rerun resumes from the latest)")


def _sft_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="jsonl of {prompt, response} or {messages}")
    _checkpoint_every(parser)
    _lora_args(parser)


def _rm_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="jsonl of {prompt, chosen, rejected}")
    parser.add_argument("--eval-data", help="held-out pairs for the accuracy")
    parser.add_argument("--reads", choices=("last", "mean", "last+mean"), default="last",
                        help="what the reward head reads: the last token's hidden state, the mean one, or both")
    _checkpoint_every(parser)


def _dpo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="jsonl of {prompt, chosen, rejected}")
    parser.add_argument("--ref", help="the frozen reference (default: --from)")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--loss", choices=("dpo", "ipo"), default="dpo")
    _checkpoint_every(parser)
    _lora_args(parser)


def _ppo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reward", default="task", help="'task' (the story-word judge) or an `rm` output dir")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--prompts-per-update", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--kl-coef", type=float, default=0.05)
    parser.add_argument("--ptx-data", help="jsonl of {prompt, response}: pretraining-style text to mix in")
    parser.add_argument("--ptx-coef", type=float, default=0.0)
    parser.add_argument("--max-kl", type=float, default=PPO_MAX_KL,
                        help="stop when an update's samples are more nats per response from the reference (0: never)")
    parser.set_defaults(lr=PPO_LR)
    _checkpoint_every(parser, 1, "updates")


def _lora_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lora-rank", type=int, default=0, help="> 0 trains LoRA adapters only")
    parser.add_argument("--lora-alpha", type=float, default=16.0)


_STAGE_ARGS = {"sft": _sft_args, "rm": _rm_args, "dpo": _dpo_args, "ppo": _ppo_args}


def run(args: argparse.Namespace) -> int:
    from lmjax.posttrain import cli_stages

    return cli_stages.STAGES[args.stage](args)
