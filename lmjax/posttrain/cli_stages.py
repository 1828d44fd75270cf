"""What each `lmjax posttrain` stage does: check everything (data files, output directory,
template, reference, LoRA rank) before training, train on the engine (`lmjax.posttrain.engine`:
--out is a run directory that the same command resumes), write the export, print a summary."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from lmjax.config import CheckpointConfig, Config, TrainConfig
from lmjax.errors import ConfigError, DataError
from lmjax.posttrain import datasets, dpo, engine, export, lora, ppo, reward, sft
from lmjax.posttrain.sequences import check_same_model
from lmjax.posttrain.template import ChatTemplate
from lmjax.posttrain.tuning import FullTuning, Tuning
from lmjax.runs.layout import RunLayout
from lmjax.runs.open import Run, open_run
from lmjax.train.callbacks import Callback, default_callbacks
from lmjax.train.result import RunResult


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


def _train(args: argparse.Namespace) -> TrainConfig:
    """The optimizer and bookkeeping of every stage, as pretraining's `train` section."""
    return TrainConfig(seed=args.seed, steps=args.steps, global_batch_size=args.batch_size, lr=args.lr,
                       warmup_steps=min(10, args.steps // 10), weight_decay=0.0,
                       log_every=args.log_every, eval_every=args.steps)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """posttrain.yaml: the stage's own arguments; a resume must give the same ones."""
    skipped = {"func", "command", "out", "steps", "log_every", "checkpoint_every"}
    return {key: value for key, value in sorted(vars(args).items())
            if key not in skipped and (value is None or isinstance(value, (str, int, float, bool)))}


def _config(args: argparse.Namespace, run: Run, train: TrainConfig, every: int) -> Config:
    return engine.run_config(run.config.model, train, args.out, base=run.config,
                             checkpoint=CheckpointConfig(every=every))


class PrintRecords(Callback):
    """Each logged record as one JSON line on stdout, as the stages always printed; the
    engine's messages (start or resume, stop) on stderr."""

    def on_message(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def on_log(self, step: int, record: dict) -> None:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}), flush=True)


def _run(method: engine.Method, args: argparse.Namespace, run: Run, config: Config) -> tuple[Any, RunResult]:
    return engine.run_method(method, config, _settings(args), tokenizer=run.tokenizer,
                             callbacks=[*default_callbacks(progress=False), PrintRecords()])


def _tuning(args: argparse.Namespace, params) -> Tuning:
    """Full tuning, or LoRA adapters whose rank is checked against `params` before anything compiles."""
    if args.lora_rank <= 0:
        return FullTuning()
    tuning = lora.LoraTuning(lora.LoraConfig(rank=args.lora_rank, alpha=args.lora_alpha, seed=args.seed))
    tuning.init(params)
    return tuning


def _check_out(args: argparse.Namespace) -> RunLayout:
    """--out's layout; a directory holding something other than a post-training run is
    refused before any file is read (a run of other settings is refused by the engine)."""
    layout = RunLayout.at(args.out)
    if layout.root.exists() and not (layout.root / engine.SETTINGS_FILE).exists():
        export.check_new_dir(args.out)
    return layout


def _finished(result: RunResult) -> bool:
    if result.preempted:
        print("stopped before the last step: run the same command again to resume")
    return not result.preempted


def _save_tuned(layout, run: Run, params, template: ChatTemplate, config: Config, tuning: Tuning,
                trained) -> None:
    """The export, and beside it (lora/) the adapters alone when only adapters trained."""
    export.save_model(layout, run, params, template, config)
    if isinstance(tuning, lora.LoraTuning):
        lora.save_adapters(layout.root / "lora", trained["lora"], tuning.config)


def run_sft(args: argparse.Namespace) -> int:
    layout, examples, template = _check_out(args), datasets.read_sft(args.data), _template(args)
    run = _open(args)
    rows = sft.sft_rows(examples, run.tokenizer, template, args.seq_len)
    tuning, train = _tuning(args, run.params), _train(args)
    config = _config(args, run, train, args.checkpoint_every)
    trained, result = _run(sft.sft_method(run.model, run.params, rows, train, tuning), args, run, config)
    if _finished(result):
        _save_tuned(layout, run, tuning.merged(trained), template, config, tuning, trained)
        print(f"wrote {args.out}: SFT on {len(examples)} examples, {tuning.trainable_count(trained):,} trained parameters")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    layout, template = _check_out(args), _template(args)
    pairs = datasets.read_preferences(args.data)
    held_out = datasets.read_preferences(args.eval_data) if args.eval_data else []
    run = _open(args)
    rows = dpo.pair_rows(pairs, run.tokenizer, template, args.seq_len)
    held_rows = dpo.pair_rows(held_out, run.tokenizer, template, args.seq_len) if held_out else None
    train = _train(args)
    config = _config(args, run, train, args.checkpoint_every)
    initial = reward.init_reward_model(run.params, run.config.model.d_model, args.reads)
    params, result = _run(reward.reward_method(run.model, initial, rows, train, held_rows), args, run, config)
    if not _finished(result):
        return 0
    if held_out and result.records:
        print(f"held-out accuracy {result.records[-1]['held_out_accuracy']:.3f} on {len(held_out)} pairs")
    export.save_model(layout, run, params["backbone"], template, config)
    export.save_head(layout, params["head"])
    print(f"wrote {args.out}: reward model (decoder + {export.HEAD_FILE}, reads {args.reads})")
    return 0


def run_dpo(args: argparse.Namespace) -> int:
    layout, template = _check_out(args), _template(args)
    pairs = datasets.read_preferences(args.data)
    dpo_config = dpo.DPOConfig(beta=args.beta, loss=args.loss)
    run = _open(args)
    reference = open_run(args.ref, tokenizer=args.tokenizer) if args.ref else run
    check_same_model(run.config.model, reference.config.model)
    rows = dpo.pair_rows(pairs, run.tokenizer, template, args.seq_len)
    tuning, train = _tuning(args, run.params), _train(args)
    config = _config(args, run, train, args.checkpoint_every)
    method = dpo.dpo_method(run.model, run.params, reference.params, rows, train, dpo_config, tuning)
    trained, result = _run(method, args, run, config)
    if _finished(result):
        _save_tuned(layout, run, tuning.merged(trained), template, config, tuning, trained)
        print(f"wrote {args.out}: {args.loss.upper()} on {len(pairs)} pairs, beta {args.beta}")
    return 0


def run_ppo(args: argparse.Namespace) -> int:
    layout, template = _check_out(args), _template(args)
    ptx = datasets.read_sft(args.ptx_data) if args.ptx_data else None
    ppo_config = ppo.PPOConfig(updates=args.updates, prompts_per_update=args.prompts_per_update,
                               max_new_tokens=args.max_new_tokens, seq_len=args.seq_len,
                               kl_coef=args.kl_coef, ptx_coef=args.ptx_coef, max_kl=args.max_kl)
    run = _open(args)
    reward_fn = ppo.task_reward
    if args.reward != "task":
        judge = open_run(args.reward, tokenizer=args.tokenizer)
        check_same_model(run.config.model, judge.config.model, "reward")
        reward_fn = ppo.reward_model_fn(run.model, {"backbone": judge.params, "head": export.load_head(args.reward)})
    ptx_rows = None if ptx is None else sft.sft_rows(ptx, run.tokenizer, template, args.seq_len)
    train = ppo_config.train_config(TrainConfig(seed=args.seed, lr=args.lr, warmup_steps=0, weight_decay=0.0))
    config = _config(args, run, train, args.checkpoint_every * ppo_config.steps_per_update)
    method = ppo.ppo_method(run.model, run.params, run.tokenizer, template, ppo_config, train, reward_fn,
                            ptx_rows=ptx_rows, ptx_batch_size=args.batch_size)
    try:
        trained, result = _run(method, args, run, config)
        done = f"PPO policy after {args.updates} updates"
    except ppo.KLLimitReached as stop:
        latest = engine.trained_at_latest_checkpoint(method, config, _settings(args))
        if latest is None:
            print(f"{stop}; no checkpoint was saved before it, so nothing is exported", file=sys.stderr)
            return 0
        (step, trained), result = latest, None
        done = f"PPO policy of step {step}, update {step // ppo_config.steps_per_update}"
        print(f"{stop}; exporting the latest checkpoint (step {step})", file=sys.stderr)
    if result is None or _finished(result):
        export.save_model(layout, run, trained["policy"], template, config)
        export.save_head(layout, trained["value_head"])
        print(f"wrote {args.out}: {done}")
    return 0


STAGES = {"sft": run_sft, "rm": run_rm, "dpo": run_dpo, "ppo": run_ppo}
