"""`lmjax tokenizer train ...` and `lmjax tokenizer encode ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmjax.commands.output_dir import check_output_dir

KINDS = ("bpe", "wordpiece", "sentencepiece")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tokenizer", help="train a tokenizer or encode text with one",
        description="Train a byte-level BPE, WordPiece or SentencePiece tokenizer, or encode text with a saved one.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    train = actions.add_parser("train", help="train a tokenizer on text files and save it to a directory")
    train.add_argument("--kind", required=True, choices=KINDS)
    train.add_argument("--vocab-size", required=True, type=int, help="total ids, special tokens included")
    train.add_argument("--out", required=True, type=Path, help="directory to save the tokenizer into")
    train.add_argument("--model-type", default="unigram", choices=("unigram", "bpe"),
                       help="sentencepiece only: the SentencePiece algorithm")
    train.add_argument("--extra-ids", type=int, default=0,
                       help="sentencepiece only: T5 sentinels <extra_id_i> at the end of the vocabulary")
    train.add_argument("--character-coverage", type=float, default=1.0,
                       help="sentencepiece only, 0.98 to 1: share of characters kept as pieces; "
                       "the rarest others fall back to bytes (e.g. 0.9995 for many-script text)")
    train.add_argument("--lowercase", action="store_true",
                       help="wordpiece only: lower-case and strip accents (BERT uncased)")
    train.add_argument("files", nargs="+", type=Path, metavar="FILE", help="training text")
    train.set_defaults(func=run_train)

    encode = actions.add_parser("encode", help="print the ids of text (files, or standard input)")
    encode.add_argument("--tokenizer", required=True, type=Path,
                        help="a directory written by `tokenizer train`, or a tokenizer.json")
    encode.add_argument("--allow-special", action="store_true",
                        help="turn special-token strings in the text into their ids")
    encode.add_argument("files", nargs="*", type=Path, metavar="FILE", help="text files (default: standard input)")
    encode.set_defaults(func=run_encode)


def run_train(args: argparse.Namespace) -> int:
    from lmjax.tokenizers import train_tokenizer

    check_output_dir(args.out, must_be_empty=True)
    options = {
        "bpe": {"progress": True},
        "wordpiece": {"progress": True, "lowercase": args.lowercase},
        "sentencepiece": {"model_type": args.model_type, "extra_ids": args.extra_ids,
                          "character_coverage": args.character_coverage},
    }[args.kind]
    tokenizer = train_tokenizer(args.kind, args.files, vocab_size=args.vocab_size, **options)
    tokenizer.save(args.out)
    print(f"saved a {args.kind} tokenizer with {tokenizer.vocab_size} ids to {args.out}")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    """One line of space-separated ids per input file (or for standard input).

    BPE reads its input as bytes, so it encodes text that is not valid UTF-8 too; the other
    tokenizers name the first byte that is not UTF-8.
    """
    from lmjax.tokenizers import BPETokenizer, load
    from lmjax.tokenizers.base import decode_utf8, read_corpus_bytes

    check_inputs(args.files)
    tokenizer = load(args.tokenizer)
    allowed = "all" if args.allow_special else ()
    inputs = [(str(path), read_corpus_bytes(path)) for path in args.files] or [
        ("standard input", sys.stdin.buffer.read())]
    for source, data in inputs:
        if isinstance(tokenizer, BPETokenizer) and not allowed:
            ids = tokenizer.encode_bytes(data)
        else:
            ids = tokenizer.encode(decode_utf8(data, source), allowed_special=allowed)
        print(" ".join(map(str, ids)))
    return 0


def check_inputs(files: list[Path]) -> None:
    from lmjax.errors import DataError

    for path in files:
        if not path.is_file():
            raise DataError(f"input file {path} does not exist")
