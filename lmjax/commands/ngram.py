"""`lmjax ngram`: train, evaluate and sample n-gram baselines, and estimate Shannon's F_N.

Imports only numpy-level code, so it starts without loading JAX.
"""

from __future__ import annotations

import argparse
import pathlib
import time

from lmjax.commands.output_dir import check_output_dir
from lmjax.errors import ConfigError

MODEL_FILE = "model.json"
SMOOTHING_CHOICES = ("mle", "add_k", "laplace", "kneser_ney", "kn", "modified_kneser_ney", "mkn", "backoff")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ngram", help="statistical n-gram language models, the baselines")
    actions = parser.add_subparsers(dest="ngram_command", metavar="ACTION", required=True)
    _add_train(actions)
    _add_eval(actions)
    _add_shannon(actions)
    _add_sample(actions)


def _add_unit_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument("--unit", choices=("word", "char", "byte", "tokenizer"), default=default,
                        help="what a token is; each non-empty line is a sentence"
                        + (f" (default {default})" if default else " (default: the model's)"))
    parser.add_argument("--tokenizer", metavar="DIR", help="lmjax tokenizer directory, with --unit tokenizer")


def _add_train(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("train", help="fit an n-gram model on a text file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", metavar="DIR", required=True, help="directory to write model.json to")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--smoothing", choices=SMOOTHING_CHOICES, default="kn")
    p.add_argument("--k", type=float, help="add-k constant (add_k only; default 1)")
    p.add_argument("--discount", type=float, help="absolute discount in (0,1) for kn and backoff (default: estimated)")
    p.add_argument("--unk-cutoff", type=int, default=1, help="tokens seen fewer times become <unk> (default 1)")
    p.add_argument("--no-end", action="store_true", help="no </s>: one model per sentence length")
    p.add_argument("--nltk-compat", action="store_true", help="nltk.lm conventions: n-1 </s>, <s> counted in V")
    _add_unit_options(p, "word")
    p.set_defaults(func=train)


def _add_eval(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("eval", help="perplexity, entropy and OOV rate of a model on a text file")
    p.add_argument("model_dir", metavar="DIR")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--allow-zero", action="store_true", help="report an infinite perplexity instead of failing (MLE)")
    _add_unit_options(p, None)
    p.set_defaults(func=evaluate)


def _add_shannon(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("shannon", help="Shannon's letter entropies F0..Fn of a text, beside his 1951 values")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--max-order", type=int, default=3, help="largest N of F_N (default 3)")
    p.add_argument("--space", action="store_true", help="27 symbols: letters and the word break")
    p.set_defaults(func=shannon)


def _add_sample(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("sample", help="generate sentences from a trained model")
    p.add_argument("model_dir", metavar="DIR")
    p.add_argument("--num", type=int, default=1, help="how many sentences")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-len", type=int, default=100, help="tokens per sentence at most")
    p.set_defaults(func=sample)


def train(args: argparse.Namespace) -> int:
    from lmjax.ngram import NGramLM
    from lmjax.ngram.units import TextUnit

    check_output_dir(args.out)
    unit = TextUnit(args.unit, args.tokenizer)
    options = {"k": args.k, "discount": args.discount, "unk_cutoff": args.unk_cutoff}
    options["end_symbols"] = 0 if args.no_end else 1
    if args.nltk_compat:
        options.update(end_symbols=args.order - 1, bos_in_vocab=True)
    model = NGramLM(args.order, args.smoothing, **options)
    sentences = unit.read(args.file)
    start = time.perf_counter()
    model.fit(sentences)
    seconds = time.perf_counter() - start
    tokenizer = str(pathlib.Path(args.tokenizer).resolve()) if args.tokenizer else None
    model.meta = {"unit": unit.unit, "tokenizer": tokenizer}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    n_tokens = sum(len(s) for s in sentences)
    print(f"{model.order}-gram {model.smoothing} on {n_tokens} {unit.unit} tokens, |V| = {len(model.support())}, "
          f"fitted in {seconds:.2f} s -> {out / MODEL_FILE}")
    return 0


def _load_with_unit(model_dir: str, unit_name: str | None, tokenizer: str | None):
    from lmjax.ngram import NGramLM
    from lmjax.ngram.units import TextUnit

    model = NGramLM.load(pathlib.Path(model_dir) / MODEL_FILE)
    trained = model.meta.get("unit", "word")
    if unit_name is not None and unit_name != trained:
        raise ConfigError(f"the model in {model_dir} was trained on unit '{trained}', not '{unit_name}': "
                          f"evaluate with --unit {trained} (or leave --unit out)")
    return model, TextUnit(trained, tokenizer or model.meta.get("tokenizer"))


def evaluate(args: argparse.Namespace) -> int:
    model, unit = _load_with_unit(args.model_dir, args.unit, args.tokenizer)
    result = model.evaluate(unit.read(args.file), allow_zero=args.allow_zero)
    print(f"tokens      {result.n_tokens} {unit.unit} tokens, {result.n_predicted} predicted symbols (</s> included)")
    print(f"oov rate    {100 * result.oov_rate:.2f}%")
    print(f"perplexity  {result.perplexity:.4f}")
    print(f"entropy     {result.entropy_bits:.4f} bits per symbol")
    return 0


def shannon(args: argparse.Namespace) -> int:
    from lmjax.ngram.shannon import SHANNON_1951, letter_entropies, reduce_to_letters
    from lmjax.ngram.units import TextUnit

    text = "\n".join(" ".join(line) for line in TextUnit("word").read(args.file))
    alphabet = 27 if args.space else 26
    estimates = letter_entropies(reduce_to_letters(text, keep_space=args.space), args.max_order, alphabet)
    published = SHANNON_1951[alphabet]
    print(f"{alphabet}-symbol alphabet, bits per letter")
    print("      estimate  Shannon 1951")
    for n, value in enumerate(estimates):
        reference = f"{published[n]:.2f}" if n < len(published) else "-"
        print(f"F{n:<4} {value:8.3f}  {reference:>12}")
    return 0


def sample(args: argparse.Namespace) -> int:
    if args.num < 1:
        raise ConfigError(f"--num {args.num}: give how many sentences to sample, 1 or more")
    if args.max_len < 1:
        raise ConfigError(f"--max-len {args.max_len}: give the most tokens per sentence, 1 or more")
    model, unit = _load_with_unit(args.model_dir, None, None)
    for i in range(args.num):
        print(unit.join(model.generate(seed=args.seed + i, max_len=args.max_len)))
    return 0
