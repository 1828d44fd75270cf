"""One configuration of the GPU check per process: training throughput and MFU of lmjax's GPT
presets (one attention kernel, one layer layout), of a nanoGPT-style PyTorch peer at the same
shape, decoding tokens/s, or the eval scorer against the harness's HFLM; and the table.

Training runs on synthetic batches of random tokens: it needs lmjax's model, objective, train
step and optimizer (`lmjax.train.step`, `lmjax.train.optimizer`) and FLOP count
(`lmjax.scaling`), not its data pipeline. Compute is bfloat16 (`model.dtype=bfloat16`) on every
backend, so `--tiny` on a CPU runs the code path an accelerator runs. One configuration per
process, so JAX and PyTorch never share the GPU's memory and a crash or time-out costs one
record; each process appends its record (a JSON line with `check` and `status`) to --out the
moment it finishes, and `--table FILE` prints them beside the targets.

    python experiments/gpu_bench.py --framework jax --preset gpt3-small --impl cudnn --scan true --out runs/gpu.jsonl
    python experiments/gpu_bench.py --framework torch --preset gpt3-small --out runs/gpu.jsonl
    python experiments/gpu_bench.py --framework decode --preset gpt3-small --out runs/gpu.jsonl
    python experiments/gpu_bench.py --framework scorer --out runs/gpu.jsonl
    python experiments/gpu_bench.py --table runs/gpu.jsonl
    python experiments/gpu_bench.py --tiny --framework jax --out /tmp/t.jsonl   # CPU, tiny shape
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

TINY = {"vocab_size": 512, "d_model": 64, "n_layers": 2, "n_heads": 2, "d_ff": 256, "max_len": 128}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("jax", "torch", "decode", "scorer"), default="jax")
    parser.add_argument("--check", default="", help="the configuration's name in its record")
    parser.add_argument("--preset", default="gpt3-small", help="a GPT preset (configs/presets)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    parser.add_argument("--impl", default="xla", help="model.attention_impl (jax)")
    parser.add_argument("--scan", choices=("false", "true"), default="false",
                        help="model.scan_layers (jax)")
    parser.add_argument("--loss-chunks", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=128, help="decode: tokens per row")
    parser.add_argument("--tiny", action="store_true",
                        help="a 2-layer 64-wide GPT, 2×128 tokens, 2 steps: every path on CPU")
    parser.add_argument("--out", default="", help="append the JSON record here")
    parser.add_argument("--table", default="", help="print the records in this file and exit")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch, args.seq_len, args.steps, args.warmup, args.new_tokens = 2, 128, 2, 1, 8
    return args


def model_config(args: argparse.Namespace, **overrides):
    """The preset (or the tiny shape) in bfloat16 with `overrides`, validated."""
    from lmjax.config import ModelConfig, preset_values, validate_model

    values = {"arch": "gpt", **TINY} if args.tiny else preset_values(args.preset)
    config = dataclasses.replace(ModelConfig(**values), dtype="bfloat16",
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


def unavailable_reason(args: argparse.Namespace) -> str:
    """Why this configuration cannot run on this machine ('' when it can): cuDNN attention
    exists only on NVIDIA GPUs."""
    if args.framework == "jax" and args.impl == "cudnn":
        import jax

        if jax.default_backend() != "gpu":
            return f"cuDNN attention needs an NVIDIA GPU (JAX's backend is {jax.default_backend()})"
    return ""


def jax_runner(config, batch):
    """lmjax's own jitted train step (AdamW with global-norm clipping, decay on matrices) on a
    fixed device batch, parameters donated; returns run(n) -> seconds for n steps."""
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


def jax_record(args: argparse.Namespace) -> dict:
    """lmjax at one (attention_impl, scan_layers), MFU against the chip's published peak."""
    import jax

    from lmjax.chips import chip_peak

    device = jax.devices()[0]
    config = model_config(args, attention_impl=args.impl, scan_layers=args.scan == "true")
    run = jax_runner(config, synthetic_batch(config.vocab_size, args.batch, args.seq_len))
    run(args.warmup)
    seconds = run(args.steps)
    return train_record(args, config, f"lmjax {args.impl} scan={args.scan}", seconds,
                        chip_peak(device.device_kind), device.device_kind, f"jax {jax.__version__}")


def train_record(args, config, name: str, seconds: float, peak, device_kind: str,
                 versions: str) -> dict:
    tokens_per_s = args.steps * args.batch * args.seq_len / seconds
    achieved = tokens_per_s * flops_per_token(config, args.batch, args.seq_len)
    return {"kind": "train", "preset": "tiny" if args.tiny else args.preset, "run": name,
            "batch": args.batch, "seq_len": args.seq_len, "steps": args.steps,
            "tokens_per_s": tokens_per_s, "tflops": achieved / 1e12,
            "mfu": achieved / peak[1] if peak else None, "device": device_kind,
            "versions": versions}


def torch_record(args: argparse.Namespace) -> dict:
    """The nanoGPT-style peer: torch.compile, bf16 autocast, fused AdamW and
    scaled_dot_product_attention, on CUDA or (--tiny) on the CPU, where torch supports all four."""
    import torch

    from lmjax.chips import chip_peak
    from torch_peer import make_peer

    config = model_config(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    model = make_peer(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95),
                                  weight_decay=0.1, fused=True)
    step_model = torch.compile(model)
    batch = synthetic_batch(config.vocab_size, args.batch, args.seq_len)
    inputs, targets = (torch.from_numpy(batch[key]).long().to(device) for key in ("inputs", "targets"))

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device, dtype=torch.bfloat16):
                loss = step_model(inputs, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        loss.item()
        return time.perf_counter() - start

    run(args.warmup)
    seconds = run(args.steps)
    name = "pytorch compile+sdpa fused-adamw"
    return train_record(args, config, name, seconds, chip_peak(kind), kind, f"torch {torch.__version__}")


def measure(args: argparse.Namespace) -> dict:
    if args.framework == "jax":
        return jax_record(args)
    if args.framework == "torch":
        return torch_record(args)
    import gpu_bench_infer

    if args.framework == "decode":
        return gpu_bench_infer.decode_record(args, model_config(args))
    return gpu_bench_infer.scorer_record(args)


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gpu_table import print_table

    if args.table:
        print_table(args.table)
        return 0
    if args.framework == "torch":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")  # lmjax's FLOP count must not take the GPU
    if args.framework == "scorer":  # JAX and PyTorch score on the same GPU, in turns
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.4")
    check = args.check or f"{args.framework} {args.preset}"
    reason = unavailable_reason(args)
    result = {"status": f"unavailable: {reason}"} if reason else {"status": "ok", **measure(args)}
    result = {"check": check, **result, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"{check}: {result['status']}", json.dumps(result), sep="\n", flush=True)
    if args.out:
        with open(args.out, "a") as out:
            out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
