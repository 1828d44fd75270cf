"""Float32 matmul throughput of XLA (jax.numpy, lmjax's CPU flags) against PyTorch and numpy
in one process, at the GEMM shapes of the GPT-3 Small benchmark (batch 4 × sequence 256 =
1,024 rows, width 768, MLP 3,072, vocabulary 8,192) and at 2048³.

A training step at that shape is nearly all GEMMs, so the ratio of the two libraries' GEMM
rates bounds the ratio of their training throughputs: lmjax cannot train faster than
PyTorch by more than XLA's matmuls beat PyTorch's.

    python experiments/bench_matmul.py
"""

from __future__ import annotations

import statistics
import time

from lmjax.xla_cpu import apply_cpu_flags

SHAPES = [  # (m, k, n): rows × contraction → columns
    (1024, 768, 2304),   # fused q, k, v projection
    (1024, 768, 3072),   # MLP in
    (1024, 3072, 768),   # MLP out
    (1024, 768, 8192),   # logits
    (2048, 2048, 2048),
]


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
    apply_cpu_flags()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    print(f"{'shape m×k×n':>20s} {'XLA':>8s} {'PyTorch':>8s} {'numpy':>8s}  XLA/PyTorch (GFLOP/s)")
    for m, k, n in SHAPES:
        a, b = np.random.rand(m, k).astype(np.float32), np.random.rand(k, n).astype(np.float32)
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        matmul = jax.jit(jnp.matmul)
        flops = 2.0 * m * k * n
        xla = rate(lambda: matmul(ja, jb).block_until_ready(), flops)
        pt = rate(lambda: torch.matmul(ta, tb), flops)
        npy = rate(lambda: a @ b, flops)
        print(f"{f'{m}×{k}×{n}':>20s} {xla:8.1f} {pt:8.1f} {npy:8.1f}  {xla / pt:.2f}")


if __name__ == "__main__":
    main()
