"""The `lmjax` command: one subcommand per module in `lmjax.commands`.

Each command module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int | None`. Command modules import heavy libraries (JAX, torch) inside
their functions so that `lmjax --help` and the statistical commands start instantly.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lmjax.errors import LmjaxError, one_line_warnings

COMMAND_MODULES = (
    "lmjax.commands.train",
    "lmjax.commands.tokenizer",
    "lmjax.commands.data",
    "lmjax.commands.ngram",
    "lmjax.commands.generate",
    "lmjax.commands.convert",
    "lmjax.commands.sweep",
    "lmjax.commands.flops",
    "lmjax.commands.scaling",
    "lmjax.commands.eval",
    "lmjax.commands.tpu",
    "lmjax.commands.compress",
    "lmjax.commands.posttrain",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmjax",
        description="Language-model pretraining in JAX: GPT, BERT and T5 on one sharded stack.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with one_line_warnings(f"lmjax {args.command}"):
            return int(args.func(args) or 0)
    except LmjaxError as err:
        print(f"lmjax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
