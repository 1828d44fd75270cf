"""Float32 matmul throughput of XLA (jax.numpy, lmjax's CPU flags) against PyTorch and numpy
in one process, at the GEMM shapes of the GPT-3 Small training benchmark (batch 4 × sequence
256 = 1,024 rows, width 768, MLP 3,072, vocabulary 8,192) and at 2048³, or (`--shapes eval`)
of the evaluation benchmark (GPT-2 small scoring 4 windows of 1,024 tokens: 4,096 rows,
vocabulary 50,257).

A training step or a scoring batch at these shapes is nearly all GEMMs, so the GEMM rates
bound the throughputs: lmjax cannot run faster than its GEMMs allow. With `--shapes eval`
the script adds up one scoring batch's GEMMs (12 layers, the logits once) at each library's
rates: the least time a batch can take, attention and everything else left out.

    python experiments/bench_matmul.py
    python experiments/bench_matmul.py --shapes eval
"""

from __future__ import annotations

import argparse
import statistics
import time

from lmjax.xla_cpu import apply_cpu_flags

SHAPES = {  # (m, k, n): rows × contraction → columns
    "train": [
        (1024, 768, 2304),   # fused q, k, v projection
        (1024, 768, 3072),   # MLP in
        (1024, 3072, 768),   # MLP out
        (1024, 768, 8192),   # logits
        (2048, 2048, 2048),
    ],
    "eval": [
        (4096, 768, 2304),   # fused q, k, v projection
        (4096, 768, 768),    # attention output
        (4096, 768, 3072),   # MLP in
        (4096, 3072, 768),   # MLP out
        (4096, 768, 50257),  # logits
    ],
}
EVAL_LAYERS = 12  # GPT-2 small: each shape but the logits runs once a layer


def rate(run, flops: float, repeats: int = 7) -> float:
    """Median GFLOP/s of `run` after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return flops / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="train")
    args = parser.parse_args()
    apply_cpu_flags()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    print(f"{'shape m×k×n':>20s} {'XLA':>8s} {'PyTorch':>8s} {'numpy':>8s}  XLA/PyTorch (GFLOP/s)")
    seconds = {"XLA": 0.0, "PyTorch": 0.0, "numpy": 0.0}
    for m, k, n in SHAPES[args.shapes]:
        a, b = np.random.rand(m, k).astype(np.float32), np.random.rand(k, n).astype(np.float32)
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        matmul = jax.jit(jnp.matmul)
        flops = 2.0 * m * k * n
        xla = rate(lambda: matmul(ja, jb).block_until_ready(), flops)
        pt = rate(lambda: torch.matmul(ta, tb), flops)
        npy = rate(lambda: a @ b, flops)
        print(f"{f'{m}×{k}×{n}':>20s} {xla:8.1f} {pt:8.1f} {npy:8.1f}  {xla / pt:.2f}")
        if args.shapes == "eval":
            count = 1 if n == 50257 else EVAL_LAYERS
            for name, gflops in (("XLA", xla), ("PyTorch", pt), ("numpy", npy)):
                seconds[name] += count * flops / gflops / 1e9
    if args.shapes == "eval":
        print("GEMMs of one scoring batch (4 × 1,024 tokens) at these rates: "
              + ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items()))


if __name__ == "__main__":
    main()
