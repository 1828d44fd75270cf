"""Compression of stories260K, every figure of docs/posttraining.md's Compression, Distillation
and Arena sections: int8 Δperplexity and decoding speed, a pruning table, a distilled student
against the same student on hard labels, and arena ratings of the variants.

    python experiments/compress_stories.py                      # about 15-25 minutes on 2 busy CPU cores
    python experiments/compress_stories.py --extra sft=runs/sft  # add post-trained exports to the arena

The two students train on the engine as runs in --students/distilled and --students/hard_labels
(metrics.jsonl, checkpoints): a second invocation resumes them, or reuses them when finished.

Held-out text: stories260K's own samples (temperature 1, seed --seed; no TinyStories text ships
with the data), so the float model's perplexity is its entropy rate and a variant's increase
is the KL divergence it added. The students train on other samples of the teacher (seed
--seed + 1) and are scored on the same held-out rows.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import time

import numpy as np

from lmjax.config import TrainConfig
from lmjax.decoding import Sampling, make_generator
from lmjax.models import build_model
from lmjax.posttrain import arena, distill, measure, prune, quantize, task
from lmjax.posttrain.examples import user_prompt
from lmjax.posttrain.template import ChatTemplate
from lmjax.runs import open_run
from lmjax.train.state import count_params
from stories_task import distill_and_baseline

SPARSITIES = (0.0, 0.25, 0.5, 0.75, 0.9)


def parse_args() -> argparse.Namespace:
    data_dir = os.environ.get("LMJAX_DATA_DIR", "../shared/data")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(data_dir, "stories260K", "stories260K.bin"))
    parser.add_argument("--tokenizer", default=os.path.join(data_dir, "stories260K", "tok512.model"))
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--held-out-rows", type=int, default=64)
    parser.add_argument("--row-tokens", type=int, default=129)
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--students", default="runs/compress_stories", help="run directory of the two students")
    parser.add_argument("--prompts-per-word", type=int, default=2)
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                        help="another model open_run reads (e.g. a posttrain export) for the arena")
    return parser.parse_args()


def quantization(run, rows) -> dict:
    score = measure.nll_scorer(run.model)
    q_model = quantize.Dequantized(run.model)
    q_score = measure.nll_scorer(q_model)
    kernels = quantize.quantize(run.params, run.config.model)
    everything = quantize.quantize(run.params, run.config.model, embeddings=True)
    print("## int8 weight-only quantization (per-output-channel scales)")
    print("| parameters | bytes | perplexity | Δ perplexity | decode tokens/s |\n|---|---:|---:|---:|---:|")
    base = math.exp(score(run.params, rows))
    for name, model, params, scorer in (("float32", run.model, run.params, score),
                                        ("int8 kernels", q_model, kernels, q_score),
                                        ("int8 kernels + embedding", q_model, everything, q_score)):
        ppl = math.exp(scorer(params, rows))
        speed = measure.decode_tokens_per_second(model, params)
        print(f"| {name} | {quantize.size_bytes(params):,} | {ppl:.4f} | {ppl - base:+.4f} "
              f"({100 * (ppl / base - 1):+.2f}%) | {speed:,.0f} |")
    return {"int8": (q_model, kernels)}


def pruning(run, rows) -> dict:
    score = measure.nll_scorer(run.model)
    print("\n## magnitude pruning (kernels; embedding and norms kept)")
    print("| sparsity | global: perplexity | per-layer: perplexity |\n|---:|---:|---:|")
    kept = {}
    for sparsity in SPARSITIES:
        cells = []
        for scope in prune.SCOPES:
            pruned = prune.prune(run.params, sparsity, scope)
            cells.append(f"{math.exp(score(pruned, rows)):,.2f}")
            if scope == "layer" and sparsity == 0.5:
                kept["pruned50"] = (run.model, pruned)
        print(f"| {sparsity:.0%} | {' | '.join(cells)} |")
    return kept


def distillation(run, rows, args) -> dict:
    start = time.perf_counter()
    train_rows = measure.sample_rows(run.model, run.params, args.train_rows, args.row_tokens, seed=args.seed + 1)
    student = distill.student_config(run.config.model, d_model=32, n_layers=2, n_heads=4)
    train = TrainConfig(steps=args.steps, global_batch_size=16, lr=5e-3, warmup_steps=20, weight_decay=0.0,
                        log_every=1, eval_every=args.steps)
    results = distill_and_baseline(run.model, run.params, student, train_rows, train, pathlib.Path(args.students),
                                   distill.Distillation(temperature=args.temperature))
    model = build_model(student)
    n_params = count_params(results["distilled"][0])
    score = measure.nll_scorer(model)
    print(f"\n## distillation into {student.n_layers} layers × {student.d_model} ({n_params:,} parameters), "
          f"{train.steps} steps × {train.global_batch_size} rows × {args.row_tokens - 1} tokens of "
          f"{args.train_rows} teacher samples, T={args.temperature} ({time.perf_counter() - start:.0f} s)")
    print("| student | last 10 steps' training loss (its own objective) | held-out perplexity |\n|---|---:|---:|")
    print(f"| teacher (stories260K) | | {math.exp(measure.nll_scorer(run.model)(run.params, rows)):.3f} |")
    for name, (params, losses) in results.items():
        print(f"| {name} | {np.mean(losses[-10:]):.3f} | {math.exp(score(params, rows)):.3f} |")
    return {name: (model, params) for name, (params, _) in results.items()}


def responder(model, params, tokenizer, seed: int):
    """Stories for instructions, through part A's default chat template, one sample each."""
    template = ChatTemplate()
    generator = make_generator(model, params, Sampling(temperature=1.0))

    def respond(prompts):
        ids = [template.prompt_ids(tokenizer, user_prompt(p)) for p in prompts]
        new = generator.generate(ids, 64, seed=seed, stop_ids=template.stop_ids(tokenizer))
        return [tokenizer.decode(row).strip() for row in new]

    return respond


def ratings(run, variants: dict, args) -> None:
    prompts = [task.instruction(word) for word in task.WORDS for _ in range(args.prompts_per_word)]
    respond = {name: responder(model, params, run.tokenizer, args.seed) for name, (model, params) in variants.items()}
    comparisons = arena.tournament(respond, prompts, arena.word_reward_judge)
    table = arena.rate(comparisons, arena.WORD_REWARD_JUDGE, anchor="base", bootstrap=500, seed=args.seed)
    print(f"\n## arena: {len(prompts)} prompts, every pair of variants on each, same sampling seed")
    print(table.table())


def main() -> None:
    args = parse_args()
    run = open_run(args.model, tokenizer=args.tokenizer)
    rows = measure.sample_rows(run.model, run.params, args.held_out_rows, args.row_tokens, seed=args.seed)
    print(f"held-out: {rows.shape[0]} samples of stories260K × {rows.shape[1]} tokens "
          f"(temperature 1, seed {args.seed})\n")
    variants = {"base": (run.model, run.params)}
    variants |= quantization(run, rows)
    variants |= pruning(run, rows)
    variants |= distillation(run, rows, args)
    for extra in args.extra:
        name, path = extra.split("=", 1)
        other = open_run(path, tokenizer=args.tokenizer)
        variants[name] = (other.model, other.params)
    ratings(run, variants, args)


if __name__ == "__main__":
    main()
