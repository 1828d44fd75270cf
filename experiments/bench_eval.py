"""Tokens scored per second on WikiText-2 valid (rolling log-likelihood): lmjax's `LmjaxLM`
(bucketed, jitted JAX) against the harness's own `HFLM` (eager PyTorch), on the same random
GPT-2-small-shaped weights and the same requests, reported as a ratio in one run.

    python experiments/bench_eval.py                      # GPT-2 small shape, 2 articles
    python experiments/bench_eval.py --layers 2 --docs 1  # a quick look

Each backend scores the requests once to warm up (JAX compiles), then the two take turns for
`--repeats` timed passes each, so a slow spell of this shared machine falls on both; the ratio
of the best passes is reported, with the ratio of the medians beside it. Tokens are the GPT-2
BPE tokens of the detokenized articles.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def build_model(directory: Path, data_dir: Path, args: argparse.Namespace) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=args.width, n_layer=args.layers, n_head=args.heads,
                                     n_positions=args.context)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(directory)
    shutil.copy(data_dir / "gpt2_bpe" / "encoder.json", directory / "vocab.json")
    shutil.copy(data_dir / "gpt2_bpe" / "vocab.bpe", directory / "merges.txt")
    transformers.GPT2TokenizerFast.from_pretrained(directory).save_pretrained(directory)


def requests(data_dir: Path, docs: int) -> list:
    from lm_eval.api.instance import Instance

    from lmjax.eval import tasks as task_lib

    task = task_lib.build_task("wikitext2", str(data_dir), 0)
    chosen = list(task.validation_docs())[:docs]
    return [Instance(request_type="loglikelihood_rolling", doc=doc,
                     arguments=(task.doc_to_target(doc),), idx=0) for doc in chosen]


def timed_in_turns(models: dict, batch: list, repeats: int) -> tuple[dict, dict]:
    """Per backend: its scores (from a warm-up pass: compilation, allocator warm-up) and the
    seconds of `repeats` timed passes, the backends taking turns."""
    scores = {name: model.loglikelihood_rolling(batch, disable_tqdm=True) for name, model in models.items()}
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.loglikelihood_rolling(batch, disable_tqdm=True)
            seconds[name].append(time.perf_counter() - start)
    return seconds, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("LMJAX_DATA_DIR", "../shared/data"))
    parser.add_argument("--docs", type=int, default=2, help="WikiText-2 valid articles to score")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per backend, taking turns")
    args = parser.parse_args()

    from lm_eval.models.huggingface import HFLM

    from lmjax.eval import LmjaxLM

    data_dir = Path(args.data_dir).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "gpt2"
        build_model(directory, data_dir, args)
        batch = requests(data_dir, args.docs)
        ours = LmjaxLM(str(directory), batch_size=args.batch_size)
        theirs = HFLM(pretrained=str(directory), batch_size=args.batch_size, device="cpu", dtype="float32")
        tokens = sum(len(ours.tok_encode(req.args[0], add_special_tokens=False)) for req in batch)
        seconds, scores = timed_in_turns({"lmjax": ours, "hflm": theirs}, batch, args.repeats)
    best = {name: min(times) for name, times in seconds.items()}
    result = {
        "model": f"GPT-2 shape: {args.layers} layers, width {args.width}, context {args.context}",
        "documents": len(batch), "tokens": tokens, "batch_size": args.batch_size,
        "lmjax_tokens_per_s": tokens / best["lmjax"], "hflm_tokens_per_s": tokens / best["hflm"],
        "ratio": best["hflm"] / best["lmjax"],
        "ratio_of_medians": statistics.median(seconds["hflm"]) / statistics.median(seconds["lmjax"]),
        "seconds": seconds,
        "max_relative_difference": max(abs(a - b) / abs(b) for a, b in zip(scores["lmjax"], scores["hflm"])),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
