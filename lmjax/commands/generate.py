"""`lmjax generate --checkpoint PATH [--tokenizer PATH] [--prompt TEXT] ...`."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="continue a prompt with a GPT, or answer it with a T5",
        description="Generate text from anything `lmjax.runs.open_run` opens: an lmjax run or export "
        "directory (tokenizer defaults to its tokenizer/), a transformers save_pretrained directory "
        "(its own tokenizer files) or a llama2.c .bin checkpoint (with --tokenizer, its SentencePiece "
        ".model). For T5 the prompt is the encoder's input. Uses a key/value cache: one compiled "
        "prefill, then one compiled step per token.",
    )
    parser.add_argument("--checkpoint", required=True,
                        help="run/export directory, transformers directory or llama2.c .bin file")
    parser.add_argument("--tokenizer", help="SentencePiece .model, tokenizer.json or saved tokenizer directory")
    parser.add_argument("--prompt", default="", help="text to continue (after BOS); empty: start from BOS")
    parser.add_argument("--max-new-tokens", type=int, default=256,
                        help="at most this many new tokens (>= 0; 0 prints the prompt back)")
    parser.add_argument("--temperature", type=float, default=1.0, help="0 is greedy")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest; 0: off")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass; 1: off")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-stop", action="store_true",
                        help="do not stop at the end-of-text token (BOS for llama2.c, EOS otherwise)")
    parser.add_argument("--no-cache", action="store_true",
                        help="recompute the whole sequence per token (slow; for comparison)")
    parser.add_argument("--ids", action="store_true", help="print the generated ids as JSON, not text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmjax.decoding import Sampling
    from lmjax.generate import generate

    sampling = Sampling(args.temperature, args.top_k, args.top_p)
    result = generate(
        args.checkpoint, args.tokenizer, args.prompt, args.max_new_tokens, sampling,
        args.seed, stop=not args.no_stop, use_cache=not args.no_cache,
    )
    print(json.dumps(result.generated_ids) if args.ids else result.text)
    count = len(result.generated_ids)
    rate = count / result.seconds if result.seconds > 0 else 0.0
    print(f"{count} tokens in {result.seconds:.2f} s ({rate:.1f} tokens/s, "
          "compilation included)", file=sys.stderr)
    return 0
