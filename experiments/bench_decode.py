"""Decoding throughput: lmjax generate (cached and uncached) against transformers' `generate`.

One randomly initialised GPT2LMHeadModel of a GPT-2 shape is saved with `save_pretrained` and
imported with `lmjax.runs.importers.hf.from_pretrained`, so both frameworks decode the same weights. Each
generates `--new-tokens` greedy tokens after a random prompt, batch 1, no early stop; the
time covers prefill and every step (compilation excluded by a warm-up run), and the median of
`--repeats` runs is reported. Runs of the two frameworks alternate so machine drift cancels.

    python experiments/bench_decode.py --shape gpt2-mini --new-tokens 128
    python experiments/bench_decode.py --shape gpt2-mini --new-tokens 128 --torch-threads 1
    python experiments/bench_decode.py --shape gpt2-small --new-tokens 32 --repeats 2

On a busy machine torch's default of one thread per core can be much slower than one thread
(its threads wait on each other when a core is taken); `--torch-threads 1` shows that case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

SHAPES = {
    # GPT-2 small (124M parameters) as released
    "gpt2-small": {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024, "vocab_size": 50257},
    # the same vocabulary and context with a narrow, shallow body: decoding is overhead-bound
    "gpt2-mini": {"n_embd": 256, "n_layer": 4, "n_head": 4, "n_positions": 1024, "vocab_size": 50257},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gpt2-mini")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-uncached", action="store_true", help="the slow lmjax path")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch intra-op threads; 0 keeps torch's default (one per core)")
    return parser.parse_args()


def save_random_gpt2(shape: dict, directory: str):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**shape)).eval()
    model.save_pretrained(directory)
    return model


def hf_runner(model, prompt, new_tokens: int):
    import torch

    input_ids = torch.tensor([prompt])
    mask = torch.ones_like(input_ids)

    def run() -> list[int]:
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=mask, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=0)
        return out[0, len(prompt):].tolist()

    return run


def lmjax_runner(directory: str, prompt, new_tokens: int, use_cache: bool):
    from lmjax.decoding import Generator, Sampling
    from lmjax.runs.importers.hf import from_pretrained

    model, params = from_pretrained(directory)
    generator = Generator(model, params, Sampling(temperature=0))
    return lambda: generator.generate(prompt, new_tokens, use_cache=use_cache)[0]


def timed(run) -> tuple[float, list[int]]:
    start = time.perf_counter()
    tokens = run()
    return time.perf_counter() - start, tokens


def main() -> None:
    args = parse_args()
    import numpy as np
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    shape = SHAPES[args.shape]
    prompt = np.random.default_rng(0).integers(0, shape["vocab_size"], args.prompt_tokens).tolist()
    with tempfile.TemporaryDirectory() as directory:
        hf_model = save_random_gpt2(shape, directory)
        runners = {
            "lmjax cached": lmjax_runner(directory, prompt, args.new_tokens, use_cache=True),
            "transformers": hf_runner(hf_model, prompt, args.new_tokens),
        }
        if not args.skip_uncached:
            runners["lmjax uncached"] = lmjax_runner(directory, prompt, args.new_tokens, use_cache=False)
        outputs = {name: run() for name, run in runners.items()}  # warm-up: compiles
        seconds: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name, run in runners.items():
                elapsed, outputs[name] = timed(run)
                seconds[name].append(elapsed)

    n_params = sum(p.numel() for p in hf_model.parameters())
    print(f"{args.shape}: {n_params / 1e6:.1f}M parameters, prompt {args.prompt_tokens}, "
          f"{args.new_tokens} new greedy tokens, batch 1, median of {args.repeats}; "
          f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}")
    rate = {name: args.new_tokens / statistics.median(times) for name, times in seconds.items()}
    for name, tokens_per_s in rate.items():
        agree = _agreement(outputs[name], outputs["transformers"])
        print(f"  {name:15s} {tokens_per_s:9.1f} tokens/s   greedy tokens equal to transformers': {agree}")
    print(f"  ratio lmjax cached / transformers: {rate['lmjax cached'] / rate['transformers']:.2f}")
    if "lmjax uncached" in rate:
        print(f"  ratio lmjax cached / lmjax uncached: {rate['lmjax cached'] / rate['lmjax uncached']:.2f}")


def _agreement(tokens: list[int], reference: list[int]) -> str:
    same = next((i for i, (a, b) in enumerate(zip(tokens, reference)) if a != b), len(reference))
    return "all" if same == len(reference) else f"first {same} of {len(reference)}"


if __name__ == "__main__":
    main()
