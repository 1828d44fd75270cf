"""`lmjax flops`: parameters, FLOPs per token, total training compute and PF-days."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "flops",
        help="count parameters and training compute of a preset or config",
        description="Parameters (counted from the shapes, nothing allocated), training FLOPs per "
        "token in the GPT-3 paper's convention (6 per parameter per token; 3 for T5, half of "
        "whose parameters are active per token), total FLOPs and PF-days (8.64e19 FLOP) for "
        "--tokens, and the exact count from the architecture beside it. --table-d1 reproduces "
        "the GPT-3 paper's Table D.1.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a model preset, e.g. gpt3-175b")
    source.add_argument("--config", help="a named config or YAML file (overrides may follow)")
    source.add_argument("--table-d1", action="store_true",
                        help="recompute all 17 rows of GPT-3's Table D.1")
    parser.add_argument("--tokens", type=float,
                        help="training tokens, e.g. 300e9 (required unless --table-d1)")
    parser.add_argument("--seq-len", type=int,
                        help="sequence length for the exact count (default: the model's context)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.table_d1:
        return _print_table_d1(args.json)
    model, label = _model(args)  # first: an unknown preset or a bad file is the error to report
    _check_counts(args)
    from lmjax.scaling.compute import estimate

    result = estimate(model, args.tokens, args.seq_len)
    if args.json:
        print(json.dumps({"model": label, "tokens": args.tokens, **result}))
        return 0
    print(f"{label}: {result['params']:,} parameters ({result['non_embedding_params']:,} "
          "non-embedding)")
    print(f"FLOPs per token: {result['flops_per_token']:.3e} [{result['convention']}]")
    print(f"total: {result['total_flops']:.3e} FLOP = {result['pf_days']:.3e} PF-days "
          f"for {args.tokens:.3g} tokens")
    print(f"exact (attention and output head at sequence {result['exact_seq_len']}): "
          f"{result['exact_flops_per_token']:.3e} FLOPs per token, {result['exact_total_flops']:.3e} "
          f"FLOP ({result['exact_vs_convention']:+.1%} against the convention)")
    return 0


def _check_counts(args: argparse.Namespace) -> None:
    import math

    from lmjax.errors import ConfigError

    if args.tokens is None:
        raise ConfigError("--tokens must be a positive count, e.g. --tokens 300e9")
    if not (math.isfinite(args.tokens) and args.tokens > 0):
        raise ConfigError(f"--tokens {args.tokens:g} must be a finite positive count, e.g. --tokens 300e9")
    if args.seq_len is not None and args.seq_len < 1:
        raise ConfigError(f"--seq-len {args.seq_len} must be at least 1")


def _model(args: argparse.Namespace):
    from lmjax import config as config_lib

    if args.preset:
        return config_lib.preset_model(args.preset), args.preset
    return config_lib.load_config(args.config, args.overrides).model, args.config


def _print_table_d1(as_json: bool) -> int:
    from lmjax.scaling.compute import reproduce_table_d1

    rows = reproduce_table_d1()
    if as_json:
        print(json.dumps(rows))
        return 0
    print("| model | N (table) | D | FLOP (6ND or 3ND) | published | PF-days | published | "
          "N counted | FLOP from counted N | exact FLOP | exact vs 6ND |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['published_params'] / 1e6:,.0f}M | {row['tokens']:.3g} | "
              f"{row['flops']:.3e} | {row['published_flops']:.2e} | {row['pf_days']:.3g} | "
              f"{row['published_pf_days']:.3g} | {row['counted_params'] / 1e6:,.1f}M | "
              f"{row['counted_flops']:.3e} | {row['exact_flops']:.3e} | "
              f"{row['exact_vs_convention']:+.1%} |")
    return 0
