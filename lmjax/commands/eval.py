"""`lmjax eval --checkpoint PATH --tasks ... [--shots K] [--data-dir DIR] [--limit N] ...`."""

from __future__ import annotations

import argparse
import json
import os
import pathlib

from lmjax.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score a model on LAMBADA, CBT, WikiText, PTB, enwik8, text8, SuperGLUE (lm-eval harness)",
        description="Evaluate anything `lmjax.runs.open_run` opens (run, export, transformers "
        "directory, llama2.c .bin with --tokenizer) or an n-gram model.json through EleutherAI's "
        "lm-evaluation-harness, on the task files under --data-dir. Prints the GPT-2 paper's table "
        "(published GPT-2 rows beside ours) and writes every number to --output.",
    )
    parser.add_argument("--checkpoint", required=True, nargs="+",
                        help="one or more models: run/export/transformers directory, llama2.c .bin, "
                        "or an n-gram model.json (one table row each)")
    parser.add_argument("--tasks", required=True,
                        help="comma-separated: lambada, lambada_final_token, cbt-cn, cbt-ne, wikitext2, "
                        "wikitext103, ptb, 1bw, enwik8, text8, superglue (or boolq, cb, copa, multirc, "
                        "record, rte, wic, wsc), or a harness task name")
    parser.add_argument("--shots", type=int, default=0, help="in-context examples per prompt")
    parser.add_argument("--data-dir", default=None, help="task files (default $LMJAX_DATA_DIR)")
    parser.add_argument("--limit", type=int, default=None, help="at most N documents per task")
    parser.add_argument("--tokenizer", default=None,
                        help="SentencePiece .model, tokenizer.json or tokenizer directory, for checkpoints without one")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per scoring batch")
    parser.add_argument("--output", default="eval.json", help="where to write every number")
    parser.add_argument("--write-prompts", action="store_true",
                        help="also write the exact prompts and continuations to --output")
    parser.add_argument("--truncate", action="store_true",
                        help="cut prompts longer than the model's context from the left (the harness's "
                        "transformers behaviour) instead of refusing them")
    parser.add_argument("--no-published", action="store_true", help="leave the GPT-2 rows out of the table")
    # Generation tasks: self-consistency (lmjax.eval.generation).
    parser.add_argument("--samples", type=int, default=1,
                        help="generation tasks: K sampled paths per prompt, majority vote on the answer "
                        "(needs --temperature > 0)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="generation tasks: sampling temperature (0, the default, is greedy)")
    parser.add_argument("--seed", type=int, default=0, help="generation tasks: seed of the sampled paths")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmjax.eval import evaluate
    from lmjax.eval.adapters import batch_size_of
    from lmjax.eval.dependency import require_harness
    from lmjax.eval.generation import SelfConsistency
    from lmjax.eval.harness import LmjaxLM
    from lmjax.eval.table import render
    from lmjax.eval.tasks import check_harness_equivalents, default_data_dir, expand, harness_task_names

    require_harness()
    SelfConsistency(args.samples, args.temperature, args.seed)
    output = pathlib.Path(args.output).absolute()
    check_output(output)
    batch_size_of(args.batch_size)
    expand(args.tasks, harness_task_names(args.tasks))
    data_dir = default_data_dir(args.data_dir)
    check_harness_equivalents({name.strip() for name in args.tasks.split(",")}, data_dir)
    evaluations = []
    for checkpoint in args.checkpoint:
        model = LmjaxLM(checkpoint, tokenizer=args.tokenizer, batch_size=args.batch_size,
                        truncate=args.truncate, temperature=args.temperature, seed=args.seed)
        evaluations.append(evaluate(model, args.tasks, args.shots, data_dir, args.limit,
                                    write_prompts=args.write_prompts, samples=args.samples))
    output.parent.mkdir(parents=True, exist_ok=True)
    document = evaluations[0] if len(evaluations) == 1 else evaluations
    output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(render(evaluations, published=not args.no_published))
    print(f"\nwrote {output}")
    return 0


def check_output(output: pathlib.Path) -> None:
    """Refuses, before any model is scored, an --output that writing eval.json would fail on:
    a directory, a path under a file, or a place this user cannot write (a read-only file
    system included, which os.access reports)."""
    if output.is_dir():
        raise ConfigError(f"--output {output} is a directory: give a file name, e.g. {output / 'eval.json'}")
    existing = next(parent for parent in output.parents if parent.exists())
    if not existing.is_dir():
        raise ConfigError(f"--output {output} lies under {existing}, which is a file: choose another path")
    if output.exists() and not os.access(output, os.W_OK):
        raise ConfigError(f"--output {output} exists and is not writable: choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {output}: {existing} is not writable (read-only file system or no "
                          "permission): choose another path")
