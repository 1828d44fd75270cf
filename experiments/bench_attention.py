"""One layer's causal attention at each `model.attention_blocks`, timed on this machine.

`model.attention_blocks=n` runs `lmjax.models.attention.blocked_causal_attend`: n=1 is full
attention (every query against every key, the upper triangle masked), blocks of fewer than
`TILED_MIN_ROWS` queries run as query blocks (`query_blocked_causal_attend`), larger ones as
flash-style tiles (`tiled_causal_attend`). For each n the script also times the other
algorithm at the same block size, so the threshold between them can be checked. Passes of all
variants are taken in turns in one process, so machine drift falls on each alike; the best
pass of each is reported. Figures: docs/performance.md.

    python experiments/bench_attention.py                       # GPT-2 small: 4 x 1,024 tokens
    python experiments/bench_attention.py --length 128 --batch 16 --blocks 1 2 4 --backward
"""

from __future__ import annotations

import argparse
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--backward", action="store_true", help="time forward+backward")
    return parser.parse_args()


def variants(blocks: list[int], length: int) -> dict[str, tuple]:
    """Name -> (attention function, block count) for every algorithm at every block count."""
    from lmjax.models.attention import (
        TILED_MIN_ROWS, blocked_causal_attend, query_blocked_causal_attend, tiled_causal_attend,
    )

    chosen = {}
    for n in blocks:
        if n == 1:
            chosen["full (attention_blocks=1)"] = (blocked_causal_attend, 1)
            continue
        rows = length // n
        picked = "tiles" if rows >= TILED_MIN_ROWS else "query blocks"
        chosen[f"{picked} of {rows} (attention_blocks={n})"] = (blocked_causal_attend, n)
        other, name = ((query_blocked_causal_attend, "query blocks") if picked == "tiles"
                       else (tiled_causal_attend, "tiles"))
        chosen[f"{name} of {rows}"] = (other, n)
    return chosen


def compiled(attention, n: int, backward: bool):
    """The jitted forward, or forward+backward of Σ out², of `attention` at `n` blocks."""
    import jax

    def forward(q, k, v):
        return attention(q, k, v, n)

    if not backward:
        return jax.jit(forward)
    return jax.jit(jax.grad(lambda q, k, v: (forward(q, k, v) ** 2).sum(), argnums=(0, 1, 2)))


def main() -> None:
    args = parse_args()
    import jax
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (args.batch, args.length, args.heads, args.head_dim)
    q, k, v = (jax.numpy.asarray(rng.normal(size=shape).astype(np.float32)) for _ in range(3))
    runs = {name: compiled(fn, n, args.backward)
            for name, (fn, n) in variants(args.blocks, args.length).items()}
    for run in runs.values():
        jax.block_until_ready(run(q, k, v))  # compile outside the timing
    best = {name: float("inf") for name in runs}
    for _ in range(args.passes):
        for name, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run(q, k, v))
            best[name] = min(best[name], time.perf_counter() - start)
    what = "forward+backward" if args.backward else "forward"
    print(f"one layer's causal attention, {what}, B={args.batch} T={args.length} "
          f"H={args.heads} K={args.head_dim}, best of {args.passes} ({jax.default_backend()}):")
    for name, seconds in best.items():
        print(f"  {name:<40} {seconds * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
