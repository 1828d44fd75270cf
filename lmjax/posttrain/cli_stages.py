"""What each `lmjax posttrain` stage does: check everything (data files, output directory,
template, reference, LoRA rank) before training, train, write the export, print a summary."""

from __future__ import annotations

import argparse
import json

import yaml

from lmjax.errors import ConfigError, DataError
from lmjax.posttrain import datasets, dpo, export, lora, ppo, reward, sft
from lmjax.posttrain.sequences import check_same_model
from lmjax.posttrain.template import ChatTemplate
from lmjax.posttrain.trainer import FitConfig, FullTuning, Tuning
from lmjax.runs.open import Run, open_run


def _template(args: argparse.Namespace) -> ChatTemplate:
    if args.template:
        with open(args.template) as stream:
            values = yaml.safe_load(stream) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{args.template} must map system/user/assistant/end_token to strings")
        try:
            return ChatTemplate(**values)
        except TypeError:
            raise ConfigError(f"{args.template} has keys {sorted(values)}; a chat template takes "
                              "system, user, assistant and end_token") from None
    return export.saved_template(args.source) or ChatTemplate()


def _open(args: argparse.Namespace) -> Run:
    run = open_run(args.source, tokenizer=args.tokenizer)
    if run.tokenizer is None:
        raise DataError(f"{args.source} has no tokenizer: give --tokenizer")
    if run.config.model.arch != "gpt":
        raise ConfigError(f"{args.source} is a {run.config.model.arch} model: post-training needs a decoder (gpt)")
    return run


def _fit(args: argparse.Namespace) -> FitConfig:
    return FitConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                     warmup_steps=min(10, args.steps // 10))


def _tuning(args: argparse.Namespace, params) -> Tuning:
    """Full tuning, or LoRA adapters whose rank is checked against `params` before anything compiles."""
    if args.lora_rank <= 0:
        return FullTuning()
    tuning = lora.LoraTuning(lora.LoraConfig(rank=args.lora_rank, alpha=args.lora_alpha, seed=args.seed))
    tuning.init(params)
    return tuning


def _save_tuned(layout, run: Run, params, template: ChatTemplate, history: list[dict], tuning: Tuning,
                trained) -> None:
    """The export, and beside it (lora/) the adapters alone when only adapters trained."""
    export.save_model(layout, run, params, template, history)
    if isinstance(tuning, lora.LoraTuning):
        lora.save_adapters(layout.root / "lora", trained["lora"], tuning.config)


def _print(record: dict) -> None:
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}), flush=True)


def run_sft(args: argparse.Namespace) -> int:
    layout, examples, template = export.check_new_dir(args.out), datasets.read_sft(args.data), _template(args)
    run = _open(args)
    rows = sft.sft_rows(examples, run.tokenizer, template, args.seq_len)
    tuning = _tuning(args, run.params)
    params, history, trained = sft.train_sft(run.model, run.params, rows, _fit(args), tuning, _print)
    _save_tuned(layout, run, params, template, history, tuning, trained)
    print(f"wrote {args.out}: SFT on {len(examples)} examples, {tuning.trainable_count(trained):,} trained parameters")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    layout, template = export.check_new_dir(args.out), _template(args)
    pairs = datasets.read_preferences(args.data)
    held_out = datasets.read_preferences(args.eval_data) if args.eval_data else []
    run = _open(args)
    rows = dpo.pair_rows(pairs, run.tokenizer, template, args.seq_len)
    params, history = reward.train_reward_model(
        run.model, reward.init_reward_model(run.params, run.config.model.d_model), rows, _fit(args), _print)
    if held_out:
        accuracy = reward.pair_accuracy(run.model, params, dpo.pair_rows(held_out, run.tokenizer, template, args.seq_len))
        history.append({"held_out_accuracy": accuracy})
        print(f"held-out accuracy {accuracy:.3f} on {len(held_out)} pairs")
    export.save_model(layout, run, params["backbone"], template, history)
    export.save_head(layout, params["head"])
    print(f"wrote {args.out}: reward model (decoder + {export.HEAD_FILE})")
    return 0


def run_dpo(args: argparse.Namespace) -> int:
    layout, template = export.check_new_dir(args.out), _template(args)
    pairs = datasets.read_preferences(args.data)
    config = dpo.DPOConfig(beta=args.beta, loss=args.loss)
    run = _open(args)
    reference = open_run(args.ref, tokenizer=args.tokenizer) if args.ref else run
    check_same_model(run.config.model, reference.config.model)
    rows = dpo.pair_rows(pairs, run.tokenizer, template, args.seq_len)
    tuning = _tuning(args, run.params)
    params, history, trained = dpo.train_dpo(run.model, run.params, reference.params, rows, _fit(args), config,
                                             tuning, _print)
    _save_tuned(layout, run, params, template, history, tuning, trained)
    print(f"wrote {args.out}: {args.loss.upper()} on {len(pairs)} pairs, beta {args.beta}")
    return 0


def run_ppo(args: argparse.Namespace) -> int:
    layout, template = export.check_new_dir(args.out), _template(args)
    ptx = datasets.read_sft(args.ptx_data) if args.ptx_data else None
    config = ppo.PPOConfig(updates=args.updates, prompts_per_update=args.prompts_per_update,
                           max_new_tokens=args.max_new_tokens, seq_len=args.seq_len, kl_coef=args.kl_coef,
                           lr=args.lr, ptx_coef=args.ptx_coef, seed=args.seed)
    run = _open(args)
    reward_fn = ppo.task_reward
    if args.reward != "task":
        judge = open_run(args.reward, tokenizer=args.tokenizer)
        check_same_model(run.config.model, judge.config.model, "reward")
        reward_fn = ppo.reward_model_fn(run.model, {"backbone": judge.params, "head": export.load_head(args.reward)})
    ptx_rows = None if ptx is None else sft.sft_rows(ptx, run.tokenizer, template, args.seq_len)
    trainer = ppo.PPOTrainer(run.model, run.params, run.tokenizer, template, config, reward_fn,
                             ptx_rows=ptx_rows, ptx_batch_size=args.batch_size)
    history = trainer.train(_print)
    export.save_model(layout, run, trainer.trained["policy"], template, history)
    export.save_head(layout, trainer.trained["value_head"])
    print(f"wrote {args.out}: PPO policy after {args.updates} updates")
    return 0


STAGES = {"sft": run_sft, "rm": run_rm, "dpo": run_dpo, "ppo": run_ppo}
