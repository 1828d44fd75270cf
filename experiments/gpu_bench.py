"""Training throughput and MFU of lmjax's GPT presets on one accelerator, per attention kernel
and layer layout, and of a nanoGPT-style PyTorch peer at the same shapes.

Each run trains on synthetic batches of random tokens: it needs lmjax's model, objective and
FLOP count (lmjax.models, lmjax.objectives, lmjax.scaling, lmjax.chips), not its data
pipeline, so a GPU machine without grain or TensorFlow Datasets runs it (lmjax.config needs
omegaconf: `experiments/gpu_check.sh --pack DIR` copies it there). The step is lmjax's own
(`lmjax.train.step` with `lmjax.train.optimizer`), parameters donated. One framework per process, so JAX and PyTorch
never share the GPU's memory; each run appends a JSON line to --out, and `--table FILE` prints
them side by side.

    python experiments/gpu_bench.py --framework jax --preset gpt3-small --out runs/gpu.jsonl
    python experiments/gpu_bench.py --framework torch --preset gpt3-small --out runs/gpu.jsonl
    python experiments/gpu_bench.py --table runs/gpu.jsonl
    python experiments/gpu_bench.py --tiny --framework jax --out /tmp/t.jsonl   # CPU smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

TINY = {"vocab_size": 512, "d_model": 64, "n_layers": 2, "n_heads": 2, "d_ff": 256, "max_len": 128}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("jax", "torch"), default="jax")
    parser.add_argument("--preset", default="gpt3-small", help="a GPT preset (configs/presets)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    parser.add_argument("--impls", nargs="+", default=["xla", "cudnn"],
                        help="model.attention_impl values to run (jax)")
    parser.add_argument("--scan", nargs="+", default=["false", "true"],
                        help="model.scan_layers values to run (jax)")
    parser.add_argument("--loss-chunks", type=int, default=1)
    parser.add_argument("--tiny", action="store_true",
                        help="a 2-layer 64-wide GPT, 2×128 tokens, 2 steps: checks every path on CPU")
    parser.add_argument("--out", default="", help="append one JSON line per run here")
    parser.add_argument("--table", default="", help="print the runs recorded in this file and exit")
    args = parser.parse_args()
    if args.tiny:
        args.batch, args.seq_len, args.steps, args.warmup = 2, 128, 2, 1
    return args


def model_config(args: argparse.Namespace, **overrides):
    """The preset (or the tiny shape) with `overrides`, validated; dtype auto, so bfloat16
    compute on an accelerator and float32 on a CPU."""
    from lmjax.config import ModelConfig, preset_values, validate_model

    values = {"arch": "gpt", **TINY} if args.tiny else preset_values(args.preset)
    config = dataclasses.replace(ModelConfig(**values), dtype="auto",
                                 max_len=max(values["max_len"], args.seq_len),
                                 loss_chunks=args.loss_chunks, **overrides)
    validate_model(config)
    return config


def flops_per_token(config, batch: int, seq_len: int) -> float:
    """lmjax's count of training FLOPs per token (3 × forward, causal attention counted whole)."""
    import numpy as np

    from lmjax.scaling import train_flops

    ids = np.zeros((batch, seq_len), np.int32)
    return train_flops(config, {"input_ids": ids}) / (batch * seq_len)


def synthetic_batch(vocab: int, batch: int, seq_len: int):
    import numpy as np

    tokens = np.random.default_rng(0).integers(0, vocab, (batch, seq_len + 1), dtype=np.int32)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
            "weights": np.ones((batch, seq_len), np.float32)}


def jax_runner(config, batch):
    """lmjax's own jitted train step (`lmjax.train.step`, `lmjax.train.optimizer`: AdamW with
    global-norm clipping and decay on matrices) on a fixed device batch; returns run(n) ->
    seconds for n steps."""
    import flax.linen as nn
    import jax

    from lmjax.config import TrainConfig
    from lmjax.models import build_model
    from lmjax.objectives import CausalLM
    from lmjax.train.optimizer import learning_rate_schedule, make_optimizer
    from lmjax.train.step import make_train_step

    model, objective = build_model(config), CausalLM(loss_chunks=config.loss_chunks)
    train_config = TrainConfig(lr=6e-4)
    optimizer = make_optimizer(train_config)
    train_step = make_train_step(model, objective, optimizer, learning_rate_schedule(train_config))

    example = {"input_ids": batch["inputs"][:1]}
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), **example)["params"])
    step = jax.jit(train_step, donate_argnums=0)
    holder = {"state": {"step": jax.numpy.zeros((), "int32"), "params": params,
                        "opt_state": optimizer.init(params)}}
    device_batch = jax.device_put(batch)

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            holder["state"], metrics = step(holder["state"], device_batch)
        float(metrics["loss"])  # waits for the last step
        return time.perf_counter() - start

    return run


def jax_runs(args: argparse.Namespace) -> list[dict]:
    """One record per (attention_impl, scan_layers), MFU against the chip's published peak."""
    import jax

    from lmjax.chips import chip_peak

    device = jax.devices()[0]
    peak = chip_peak(device.device_kind)
    records = []
    for impl in args.impls:
        for scan in args.scan:
            config = model_config(args, attention_impl=impl, scan_layers=scan == "true")
            batch = synthetic_batch(config.vocab_size, args.batch, args.seq_len)
            run = jax_runner(config, batch)
            run(args.warmup)
            seconds = run(args.steps)
            records.append(record(args, config, f"lmjax {impl} scan={scan}", seconds, peak,
                                  device.device_kind, f"jax {jax.__version__}"))
    return records


def record(args, config, name: str, seconds: float, peak, device_kind: str, versions: str) -> dict:
    tokens_per_s = args.steps * args.batch * args.seq_len / seconds
    achieved = tokens_per_s * flops_per_token(config, args.batch, args.seq_len)
    return {"preset": "tiny" if args.tiny else args.preset, "run": name,
            "batch": args.batch, "seq_len": args.seq_len, "steps": args.steps,
            "tokens_per_s": tokens_per_s, "tflops": achieved / 1e12,
            "mfu": achieved / peak[1] if peak else None, "device": device_kind,
            "versions": versions, "date": time.strftime("%Y-%m-%d")}


def torch_runs(args: argparse.Namespace) -> list[dict]:
    """The nanoGPT-style peer: torch.compile, bf16 autocast and fused AdamW on CUDA (eager
    float32 on CPU, where only the code path is checked), scaled_dot_product_attention."""
    import torch

    from lmjax.chips import chip_peak
    from torch_peer import make_peer

    config = model_config(args)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    kind = torch.cuda.get_device_name() if cuda else "cpu"
    model = make_peer(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95),
                                  weight_decay=0.1, fused=cuda)
    step_model = torch.compile(model) if cuda else model
    batch = synthetic_batch(config.vocab_size, args.batch, args.seq_len)
    inputs, targets = (torch.from_numpy(batch[key]).long().to(device) for key in ("inputs", "targets"))

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=cuda):
                loss = step_model(inputs, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        loss.item()
        return time.perf_counter() - start

    run(args.warmup)
    seconds = run(args.steps)
    name = "pytorch " + ("compile+sdpa" if cuda else "eager+sdpa")
    return [record(args, config, name, seconds, chip_peak(kind), kind, f"torch {torch.__version__}")]


def print_table(path: str) -> None:
    with open(path) as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    print(f"{'preset':12s} {'run':28s} {'tokens/s':>10s} {'TFLOP/s':>8s} {'MFU':>6s} {'vs torch':>8s}")
    for preset in dict.fromkeys(r["preset"] for r in records):
        rows = [r for r in records if r["preset"] == preset]
        torch_rate = next((r["tokens_per_s"] for r in rows if r["run"].startswith("pytorch")), None)
        for r in rows:
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
            ratio = f"{r['tokens_per_s'] / torch_rate:.2f}×" if torch_rate else "-"
            print(f"{preset:12s} {r['run']:28s} {r['tokens_per_s']:10.0f} {r['tflops']:8.1f} "
                  f"{mfu:>6s} {ratio:>8s}")
    if records:
        first = records[0]
        print(f"batch {first['batch']}×{first['seq_len']}, {first['steps']} timed steps, "
              f"{first['device']}, {first['date']}; "
              + ", ".join(dict.fromkeys(r["versions"] for r in records)))


def main() -> int:
    args = parse_args()
    if args.table:
        print_table(args.table)
        return 0
    if args.framework == "torch":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")  # lmjax's FLOP count must not take the GPU
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    records = jax_runs(args) if args.framework == "jax" else torch_runs(args)
    for r in records:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        print(f"{r['preset']} {r['run']}: {r['tokens_per_s']:.0f} tokens/s, MFU {mfu}", flush=True)
        if args.out:
            with open(args.out, "a") as out:
                out.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
