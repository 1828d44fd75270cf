"""Writes the scratchpad experiment's files (experiments/scratchpad.yaml trains on them):

    python experiments/scratchpad_data.py --out sweeps/scratchpad/data

- `train_max{N}/direct.jsonl` and `train_max{N}/scratchpad.jsonl`: the SAME problems (1 to N
  digits, seed 0) as {"text": ...} rows, answer only or after the scratchpad;
- `test/d{k}/arithmetic/test.jsonl` for k = 2 .. max(--test-digits): held-out problems
  (seed 1, none of them a training question) in the format of lmjax's `arithmetic_direct` and
  `arithmetic_scratchpad` tasks, so `lmjax eval --data-dir test/d{k}` scores one length;
- `tokenizer/`: one character-level SentencePiece tokenizer for every run (digits stay single
  tokens, and direct and scratchpad models read the same ids).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from scratchpad_problems import problems  # noqa: E402

ALPHABET = "0123456789+*=QSA: \n"


def write_jsonl(path: pathlib.Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_training_sets(out: pathlib.Path, max_digits: int, count: int) -> set[str]:
    chosen = problems(0, range(1, max_digits + 1), count)
    write_jsonl(out / f"train_max{max_digits}" / "direct.jsonl", [{"text": p.direct_text()} for p in chosen])
    write_jsonl(out / f"train_max{max_digits}" / "scratchpad.jsonl",
                [{"text": p.scratchpad_text()} for p in chosen])
    return {p.question for p in chosen}


def write_test_sets(out: pathlib.Path, test_digits: int, per_length: int, seen: set[str]) -> None:
    for digits in range(2, test_digits + 1):
        fresh = [p for p in problems(1000 + digits, [digits], per_length * 4) if p.question not in seen]
        unique = list({p.question: p for p in fresh}.values())[:per_length]
        write_jsonl(out / "test" / f"d{digits}" / "arithmetic" / "test.jsonl", [p.record() for p in unique])


def write_tokenizer(out: pathlib.Path) -> None:
    """A SentencePiece model whose pieces are single characters: trained on the alphabet
    alone, so it has nothing to merge."""
    from lmjax.tokenizers import train_tokenizer

    text = out / "alphabet.txt"
    text.write_text("\n".join(ALPHABET.replace("\n", "") * 50), encoding="utf-8")
    tokenizer = train_tokenizer("sentencepiece", [text], vocab_size=32, byte_fallback=False,
                                hard_vocab_limit=False)
    tokenizer.save(out / "tokenizer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="sweeps/scratchpad/data")
    parser.add_argument("--train-digits", default="3,5", help="comma-separated longest training lengths")
    parser.add_argument("--train-problems", type=int, default=20000)
    parser.add_argument("--test-digits", type=int, default=7)
    parser.add_argument("--test-problems", type=int, default=100, help="per length")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    seen: set[str] = set()
    for max_digits in (int(n) for n in args.train_digits.split(",")):
        seen |= write_training_sets(out, max_digits, args.train_problems)
    write_test_sets(out, args.test_digits, args.test_problems, seen)
    write_tokenizer(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
