"""Benchmark lmjax.ngram against nltk.lm on the text8 slice.

1. Fit time and peak memory for orders 2-5 (lmjax MLE counting and Kneser-Ney; nltk.lm
   counting), each fit in a forked child so that memory peaks do not mix.
2. Perplexity agreement with nltk.lm under its conventions (NGramLM.nltk_compatible: n-1
   `</s>` per sentence, `<s>` counted in V): MLE on training sentences (every n-gram there
   is seen, so the MLE perplexity is finite), Laplace and add-k on the held-out split.

text8 has no sentence boundaries, so the words are cut into pseudo-sentences of fixed
length; the first 90% of them train, the rest test.

    LMJAX_DATA_DIR=../shared/data python experiments/bench_ngram.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import sys
import time

from lmjax.ngram import NGramLM

TEXT8 = "text8/text8_derived_first_3010294_chars.txt"
ADD_K = 0.1


def load_sentences(data_dir: pathlib.Path, words_per_sentence: int) -> tuple[list, list]:
    words = (data_dir / TEXT8).read_text().split()
    sentences = [words[i : i + words_per_sentence] for i in range(0, len(words), words_per_sentence)]
    cut = int(0.9 * len(sentences))
    return sentences[:cut], sentences[cut:]


def rss_kib(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def fit_lmjax(order: int, smoothing: str, train: list) -> object:
    return NGramLM.nltk_compatible(order, smoothing).fit(train)


def fit_lmjax_kn(order: int, train: list) -> object:
    return NGramLM(order, "kneser_ney").fit(train)


def fit_nltk(order: int, smoothing: str, train: list) -> object:
    from nltk.lm import MLE, Laplace, Lidstone
    from nltk.lm.preprocessing import padded_everygram_pipeline

    model = {"mle": lambda: MLE(order), "laplace": lambda: Laplace(order), "add_k": lambda: Lidstone(ADD_K, order)}
    lm = model[smoothing]()
    lm.fit(*padded_everygram_pipeline(order, train))
    return lm


def _measure_child(fit, args, conn) -> None:
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # restart the peak-RSS counter
    before = rss_kib("VmRSS")
    start = time.perf_counter()
    fit(*args)
    seconds = time.perf_counter() - start
    conn.send((seconds, (rss_kib("VmHWM") - before) / 1024))


def measure(fit, *args, repeats: int) -> tuple[float, float]:
    """Best seconds and peak extra memory (MiB) of `repeats` fits, each in a forked child.

    The machine is shared, so the fastest of a few runs is the least disturbed one.
    """
    ctx = multiprocessing.get_context("fork")
    runs = []
    for _ in range(repeats):
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_measure_child, args=(fit, args, child))
        process.start()
        runs.append(parent.recv())
        process.join()
    return min(s for s, _ in runs), max(m for _, m in runs)


def nltk_perplexity(lm, order: int, sentences: list) -> float:
    from nltk.lm.preprocessing import pad_both_ends
    from nltk.util import ngrams

    return lm.perplexity([g for s in sentences for g in ngrams(pad_both_ends(s, n=order), order)])


def fit_table(orders: list[int], train: list, repeats: int) -> list[dict]:
    rows = []
    for order in orders:
        ours_s, ours_mib = measure(fit_lmjax, order, "mle", train, repeats=repeats)
        kn_s, kn_mib = measure(fit_lmjax_kn, order, train, repeats=repeats)
        nltk_s, nltk_mib = measure(fit_nltk, order, "mle", train, repeats=repeats)
        rows.append({"order": order, "lmjax_s": ours_s, "lmjax_mib": ours_mib, "lmjax_kn_s": kn_s,
                     "lmjax_kn_mib": kn_mib, "nltk_s": nltk_s, "nltk_mib": nltk_mib, "ratio": nltk_s / ours_s})
        print(f"order {order}: lmjax {ours_s:.2f} s {ours_mib:.0f} MiB (KN {kn_s:.2f} s {kn_mib:.0f} MiB), "
              f"nltk {nltk_s:.2f} s {nltk_mib:.0f} MiB, nltk/lmjax {nltk_s / ours_s:.0f}x", flush=True)
    return rows


def agreement_table(orders: list[int], train: list, test: list, mle_sentences: int) -> list[dict]:
    rows = []
    for order in orders:
        for smoothing in ("mle", "laplace", "add_k"):
            text = train[:mle_sentences] if smoothing == "mle" else test
            k = {"k": ADD_K} if smoothing == "add_k" else {}
            ours = NGramLM.nltk_compatible(order, smoothing, **k).fit(train)
            theirs = fit_nltk(order, smoothing, train)
            a, b = ours.perplexity(text), nltk_perplexity(theirs, order, text)
            own = NGramLM(order, smoothing, **k).fit(train).perplexity(text)
            same = f"{a:.4g}" == f"{b:.4g}"
            rows.append({"order": order, "smoothing": smoothing, "lmjax": a, "nltk": b, "lmjax_own_conventions": own,
                         "rel_diff": abs(a - b) / b, "same_4_digits": same})
            print(f"order {order} {smoothing:8s} lmjax {a:.6f} nltk {b:.6f} rel diff {abs(a - b) / b:.1e} "
                  f"{'agree' if same else 'DIFFER'} to 4 significant digits (lmjax's own conventions: {own:.4f})",
                  flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("LMJAX_DATA_DIR"),
                        help="shared corpora (default: $LMJAX_DATA_DIR)")
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--words-per-sentence", type=int, default=20)
    parser.add_argument("--mle-sentences", type=int, default=2000, help="training sentences MLE is scored on")
    parser.add_argument("--repeats", type=int, default=2, help="fits per timing; the fastest counts")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("set LMJAX_DATA_DIR or --data-dir to the shared corpora")
    train, test = load_sentences(pathlib.Path(args.data_dir), args.words_per_sentence)
    print(f"text8 slice: {sum(map(len, train))} training words, {sum(map(len, test))} test words "
          f"in sentences of {args.words_per_sentence}", flush=True)
    figures = {"fit": fit_table(args.orders, train, args.repeats),
               "agreement": agreement_table(args.orders, train, test, args.mle_sentences)}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if all(row["same_4_digits"] for row in figures["agreement"]) else 1


if __name__ == "__main__":
    sys.exit(main())
