"""`lmjax compress quantize|prune|distill`: compress any decoder `open_run` opens.

Each reports perplexity on held-out samples of the source model itself (temperature 1, a fixed
seed: see lmjax.posttrain.measure); `prune` and `distill` write their model to --out as an
lmjax export that `open_run` and `lmjax generate` read. `distill` trains on the engine
(`lmjax.posttrain.engine`): --out is its run directory (checkpoints, metrics.jsonl, the lock),
which the same command resumes; `--compare`'s hard-label student is the run in --out/hard_labels.
`quantize` measures int8 inference (perplexity and KV-cache decoding speed) and writes nothing:
its int8 tree is an inference format, not a checkpoint `lmjax train` could continue.
"""

from __future__ import annotations

import argparse
import math


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compress", help="int8 quantization, magnitude pruning and distillation of a decoder",
        description="Compress a model (a run, an export, a llama2.c .bin with --tokenizer) and "
        "measure what it costs in perplexity (docs/posttraining.md).",
    )
    methods = parser.add_subparsers(dest="method", metavar="METHOD", required=True)
    quantize = methods.add_parser("quantize", help="int8 weight-only, per-output-channel scales")
    _common(quantize)
    quantize.add_argument("--embeddings", action="store_true", help="quantize embedding tables too")
    quantize.set_defaults(func=run_quantize)
    prune = methods.add_parser("prune", help="zero the smallest-magnitude kernel weights")
    _common(prune)
    prune.add_argument("--sparsity", type=float, required=True, help="share of kernel weights zeroed, in [0, 1)")
    prune.add_argument("--scope", choices=("global", "layer"), default="global")
    prune.add_argument("--out", help="a new directory for the pruned model (an export)")
    prune.set_defaults(func=run_prune)
    distill = methods.add_parser("distill", help="train a smaller student on the model's distribution")
    _common(distill)
    _distill_args(distill)
    distill.set_defaults(func=run_distill)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, help="the model to compress")
    parser.add_argument("--tokenizer",
                        help="SentencePiece .model, tokenizer.json or tokenizer dir (a llama2.c .bin needs it)")
    parser.add_argument("--held-out-rows", type=int, default=32, help="samples of the model scored")
    parser.add_argument("--row-tokens", type=int, default=129, help="tokens per sample (BOS included)")
    parser.add_argument("--seed", type=int, default=123, help="seed of the held-out samples")


def _distill_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the student's run directory: new, or this same run to resume")
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--hard-weight", type=float, default=0.0, help="share of hard-label cross-entropy")
    parser.add_argument("--train-rows", type=int, default=256, help="teacher samples trained on")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--log-every", type=int, default=10, help="steps between metrics.jsonl records")
    parser.add_argument("--checkpoint-every", type=int, default=50,
                        help="steps between checkpoints (a rerun resumes from the latest)")
    parser.add_argument("--compare", action="store_true",
                        help="also train the same student on hard labels of the same tokens (in --out/hard_labels)"
                        " and report both")


def run_quantize(args: argparse.Namespace) -> int:
    from lmjax.posttrain import measure, quantize

    run, rows = _open(args)
    quantized = quantize.quantize(run.params, run.config.model, embeddings=args.embeddings)
    q_model = quantize.Dequantized(run.model)
    before, after = measure.perplexity(run.model, run.params, rows), measure.perplexity(q_model, quantized, rows)
    speed_before = measure.decode_tokens_per_second(run.model, run.params)
    speed_after = measure.decode_tokens_per_second(q_model, quantized)
    print(f"perplexity {before:.4f} -> {after:.4f} ({100 * (after / before - 1):+.3f}%) on {rows.shape[0]} "
          f"held-out samples; bytes {quantize.size_bytes(run.params):,} -> {quantize.size_bytes(quantized):,}; "
          f"decoding {speed_before:,.0f} -> {speed_after:,.0f} tokens/s")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from lmjax.posttrain import export, measure, prune

    prune.check_sparsity(args.sparsity)
    layout = export.check_new_dir(args.out) if args.out else None
    run, rows = _open(args)
    pruned = prune.prune(run.params, args.sparsity, args.scope)
    score = measure.nll_scorer(run.model)
    print(f"{args.scope} sparsity {prune.sparsity_of(pruned):.3f}: perplexity "
          f"{math.exp(score(run.params, rows)):.3f} -> {math.exp(score(pruned, rows)):.3f}")
    if layout is not None:
        export.write_export(layout, run, pruned)
        print(f"wrote {layout.root}")
    return 0


# Arguments that change neither the student nor its training, so a resume may differ in them
# (steps and the bookkeeping are config.yaml's; the engine checks those).
_NOT_SETTINGS = {"func", "command", "out", "steps", "log_every", "checkpoint_every", "held_out_rows", "compare"}
HARD_LABELS_DIR = "hard_labels"


def run_distill(args: argparse.Namespace) -> int:
    from lmjax.models import build_model
    from lmjax.posttrain import distill, engine, export, measure
    from lmjax.runs import open_run
    from lmjax.runs.layout import RunLayout

    layout = RunLayout.at(args.out)
    if not (layout.root / engine.SETTINGS_FILE).exists():  # a finished or stopped run is resumed
        export.check_new_dir(args.out)
    objective = distill.Distillation(temperature=args.temperature, hard_weight=args.hard_weight)
    run = open_run(args.source, tokenizer=args.tokenizer)
    student = distill.student_config(run.config.model, args.d_model, args.layers, args.heads)
    runs = _student_runs(args, run, student, layout)
    rows = _held_out(args, run)
    train_rows = measure.sample_rows(run.model, run.params, args.train_rows, args.row_tokens, seed=args.seed + 1)
    model = build_model(student)
    config = runs["distill"][0]
    params = distill.init_params(model, config.train.seed)
    teacher = distill.teacher_logits_fn(run.model, run.params)
    trained = _train_student(distill.student_method(model, params, train_rows, config.train, objective, teacher),
                             *runs["distill"], run)
    if trained is None:
        return 0
    score = measure.nll_scorer(model)
    print(f"teacher perplexity {math.exp(measure.nll_scorer(run.model)(run.params, rows)):.3f}; distilled student "
          f"{math.exp(score(trained, rows)):.3f}")
    if args.compare:
        hard = _train_student(distill.student_method(model, params, train_rows, config.train),
                              *runs["hard_labels"], run)
        if hard is None:
            return 0
        print(f"same student on hard labels of the same tokens: {math.exp(score(hard, rows)):.3f}")
    export.write_export(layout, run, trained, config=config)
    print(f"wrote {layout.root}")
    return 0


def _student_runs(args: argparse.Namespace, run, student, layout) -> dict[str, tuple]:
    """(config, settings) of the distilled student's run in --out and, with --compare, of the
    hard-label one in --out/hard_labels; another run in either is refused before any sampling."""
    from lmjax.posttrain import engine

    settings = {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_SETTINGS}
    runs = {"distill": (_distill_config(args, run, student, layout.root), settings)}
    if args.compare:
        runs["hard_labels"] = (_distill_config(args, run, student, layout.root / HARD_LABELS_DIR),
                               {**settings, "method": "hard_labels"})
    for config, run_settings in runs.values():
        engine.check_posttrain_dir(config, run_settings)
    return runs


def _distill_config(args: argparse.Namespace, run, student, run_dir):
    """The student's run config: the source's sections with the student model and this optimizer."""
    from lmjax.config import CheckpointConfig, TrainConfig
    from lmjax.posttrain import engine

    train = TrainConfig(steps=args.steps, global_batch_size=args.batch_size, lr=args.lr,
                        warmup_steps=min(20, args.steps // 10), weight_decay=0.0,
                        log_every=args.log_every, eval_every=args.steps)
    return engine.run_config(student, train, run_dir, base=run.config,
                             checkpoint=CheckpointConfig(every=args.checkpoint_every))


def _train_student(method, config, settings: dict, run):
    """The student's parameters trained on the engine in `config.run_dir`; None (after saying
    how to resume) when the run was stopped before its last step."""
    from lmjax.posttrain import cli_stages, engine
    from lmjax.train.callbacks import default_callbacks

    trained, result = engine.run_method(method, config, settings, tokenizer=run.tokenizer,
                                        callbacks=[*default_callbacks(progress=False), cli_stages.PrintRecords()])
    if result.preempted:
        print("stopped before the last step: run the same command again to resume")
        return None
    return trained


def _open(args: argparse.Namespace):
    """The source model and its held-out samples."""
    from lmjax.runs import open_run

    run = open_run(args.source, tokenizer=args.tokenizer)
    return run, _held_out(args, run)


def _held_out(args: argparse.Namespace, run):
    """The source model's held-out samples that every method is scored on."""
    from lmjax.posttrain import measure

    return measure.sample_rows(run.model, run.params, args.held_out_rows, args.row_tokens, seed=args.seed)
