"""`lmjax data prepare|fertility|demo-shards`: the sharded-corpus pipeline from the shell."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="prepare the token cache of data.sources, report tokenizer fertility",
        description="Tokenize a config's data.sources into the token cache (as `lmjax train` does "
        "on demand), report bytes and words per token per source, or write demo shards.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    prepare = actions.add_parser("prepare", help="tokenize every source once into the cache")
    _config_arguments(prepare)
    prepare.add_argument("--workers", type=int, default=0, help="tokenizing processes (default data.prepare_workers)")
    prepare.set_defaults(func=run_prepare)

    fertility = actions.add_parser("fertility", help="bytes and words per token per source, vs GPT-2's BPE")
    _config_arguments(fertility)
    fertility.add_argument("--bytes", type=int, default=300_000, help="text sampled per source")
    fertility.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    fertility.set_defaults(func=run_fertility)

    demo = actions.add_parser("demo-shards", help="write FineWeb-2-style shards from the data dir's text")
    demo.add_argument("out", type=Path, help="folder to write <lang>/<i>.parquet|jsonl.zst into")
    demo.add_argument("--parts", type=int, default=4, help="shards per language")
    demo.set_defaults(func=run_demo)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a named config or a YAML file with data.sources")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")


def _load(args: argparse.Namespace):
    from lmjax.config import load_config
    from lmjax.errors import ConfigError

    config = load_config(args.config, args.overrides)
    if not config.data.sources:
        raise ConfigError(f"config {args.config} has no data.sources: `lmjax data` works on sharded "
                          "sources (docs/data.md); a data.corpus is prepared by `lmjax train` itself")
    return config


def run_prepare(args: argparse.Namespace) -> int:
    from lmjax.data import build_tokenizer, load_mixture

    config = _load(args)
    tokenizer = build_tokenizer(config.data, config.model.vocab_size)
    mixture = load_mixture(config.data, tokenizer, workers=args.workers or None, progress=True)
    print(f"{'source':<12} {'rows':>9} {'filtered':>9} {'dupes':>7} {'train docs':>11} "
          f"{'train tokens':>13} {'valid docs':>11} {'valid tokens':>13}  cache")
    for cache in mixture.caches:
        m = cache.manifest
        print(f"{cache.source.name:<12} {m['rows']:>9,} {m['filtered_out']:>9,} {m['duplicates']:>7,} "
              f"{m['train']['documents']:>11,} {m['train']['tokens']:>13,} "
              f"{m['validation']['documents']:>11,} {m['validation']['tokens']:>13,}  {cache.directory}")
    return 0


def run_fertility(args: argparse.Namespace) -> int:
    from lmjax.config import resolve_data_dir
    from lmjax.data import build_tokenizer
    from lmjax.data.fertility import gpt2_tokenizer, report
    from lmjax.data.sources import resolve_sources

    config = _load(args)
    tokenizer = build_tokenizer(config.data, config.model.vocab_size)
    rows = report(resolve_sources(config.data), tokenizer, gpt2_tokenizer(resolve_data_dir(config.data)),
                  args.bytes)
    if args.json:
        print("\n".join(json.dumps(row) for row in rows))
        return 0
    print(f"tokenizer: {config.data.tokenizer}, {tokenizer.vocab_size} ids; GPT-2 BPE: 50,257 ids")
    print(f"{'source':<10} {'bytes':>9} {'bytes/token':>12} {'GPT-2':>7} {'words/token':>12} {'GPT-2':>7}")
    for row in rows:
        print(f"{row['source']:<10} {row['bytes']:>9,} {row['bytes_per_token']:>12.2f} "
              f"{row['gpt2_bytes_per_token']:>7.2f} {row['words_per_token']:>12.3f} {row['gpt2_words_per_token']:>7.3f}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from lmjax.config import DataConfig, resolve_data_dir
    from lmjax.data.demo_shards import write_corpus
    from lmjax.errors import ConfigError

    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"{args.out} is a file, not a folder: give a folder to write the shards "
                          "into (it is made if missing)")
    if args.parts < 1:
        raise ConfigError(f"--parts={args.parts}: give at least one shard per language")
    made = write_corpus(args.out, resolve_data_dir(DataConfig()), parts=args.parts)
    for lang, columns in made.items():
        print(f"{lang}: {len(columns['text']):,} documents in {args.parts} shards under {args.out / lang}")
    return 0
