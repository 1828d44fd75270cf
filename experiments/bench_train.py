"""Training throughput of lmjax's GPT against transformers' PyTorch GPT2LMHeadModel.

Both train the same shape on the same random batches with AdamW; steps alternate between
the two so machine drift cancels, and the medians are compared. MFU is measured against a
float32 matmul of the largest size the config uses, timed in this process.

    python experiments/bench_train.py --config gpt_tiny --steps 12
    python experiments/bench_train.py --config gpt3_small data.seq_len=256 train.global_batch_size=4 \
        model.vocab_size=8192 --steps 8
    python experiments/bench_train.py --config gpt_tiny --xla-flags cpu_fast model.attention_blocks=4
    python experiments/bench_train.py --config gpt3_small --device --no-peer   # on a GPU or TPU

`--device` measures MFU against the accelerator's published dense bfloat16 peak
(`lmjax.chips`, from jax.devices()[0].device_kind) instead of a measured float32 matmul.

XLA flags must be set before JAX starts, so `--xla-flags` is applied before importing it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from lmjax.xla_cpu import CPU_FLAGS

XLA_PRESETS = {"default": "", "cpu_fast": " ".join(CPU_FLAGS)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="gpt_tiny")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each framework")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--xla-flags", choices=sorted(XLA_PRESETS), default="default")
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--device", action="store_true",
                        help="MFU against the accelerator's published bf16 peak (lmjax.chips)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    return parser.parse_args()


def lmjax_trainer(config, objective, batch):
    """A jitted lmjax train step on a fixed batch, and the parameter count."""
    import flax.linen as nn
    import jax

    from lmjax.models import build_model
    from lmjax.train.optimizer import learning_rate_schedule, make_optimizer
    from lmjax.train.state import count_params
    from lmjax.train.step import make_train_step

    model = build_model(config.model)
    optimizer = make_optimizer(config.train)
    example = objective.model_inputs({k: v[:1] for k, v in batch.items()})
    params = nn.unbox(jax.jit(model.init)(jax.random.key(0), **example)["params"])
    state = {"step": jax.numpy.zeros((), "int32"), "params": params,
             "opt_state": optimizer.init(params)}
    step = jax.jit(make_train_step(model, objective, optimizer, learning_rate_schedule(config.train)),
                   donate_argnums=0)
    holder = {"state": state}
    device_batch = jax.device_put(batch)

    def run_step() -> float:
        holder["state"], metrics = step(holder["state"], device_batch)
        return float(metrics["loss"])

    return run_step, count_params(params)


def torch_trainer(config, batch):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model_config = config.model
    peer = GPT2LMHeadModel(GPT2Config(
        vocab_size=model_config.vocab_size, n_positions=model_config.max_len,
        n_embd=model_config.d_model, n_layer=model_config.n_layers, n_head=model_config.n_heads,
        n_inner=model_config.d_ff, activation_function="gelu_new", resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=model_config.norm_eps,
    ))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    peer.to(device).train()
    optimizer = torch.optim.AdamW(peer.parameters(), lr=config.train.lr,
                                  betas=(config.train.b1, config.train.b2),
                                  weight_decay=config.train.weight_decay)
    inputs = torch.from_numpy(batch["inputs"]).long().to(device)
    targets = torch.from_numpy(batch["targets"]).long().to(device)

    def run_step() -> float:
        optimizer.zero_grad(set_to_none=True)
        logits = peer(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(peer.parameters(), config.train.grad_clip)
        optimizer.step()
        return loss.item()

    return run_step


def device_peak() -> float | None:
    """The published bf16 peak of this process's first device, printed; None (said why) for a
    device the table lacks, such as a CPU."""
    import jax

    from lmjax.chips import chip_peak

    kind = jax.devices()[0].device_kind
    found = chip_peak(kind)
    if found is None:
        print(f"--device: no published bf16 peak for device kind {kind!r} (lmjax.chips): "
              "measuring a matmul instead", file=sys.stderr)
        return None
    name, peak = found
    print(f"published dense bf16 peak of {name} ({kind}): {peak / 1e12:.0f} TFLOP/s")
    return peak


def timed(run_step) -> float:
    start = time.perf_counter()
    run_step()
    return time.perf_counter() - start


def time_alternating(runners: dict, warmup: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of each runner, steps interleaved so machine drift hits all alike."""
    for run_step in runners.values():
        for _ in range(warmup):
            run_step()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(steps):
        for name, run_step in runners.items():
            times[name].append(timed(run_step))
    return times


def main() -> int:
    args = parse_args()
    os.environ["XLA_FLAGS"] = " ".join(
        filter(None, [os.environ.get("XLA_FLAGS", ""), XLA_PRESETS[args.xla_flags]])
    )
    import numpy as np

    from lmjax.config import load_config
    from lmjax.objectives import CausalLM
    from lmjax.scaling import train_flops
    from lmjax.train import flops as flops_lib

    config = load_config(args.config, args.overrides)
    batch_size, seq_len = config.train.global_batch_size, config.data.seq_len
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, config.model.vocab_size, (batch_size, seq_len + 1), dtype=np.int32)
    batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
             "weights": np.ones((batch_size, seq_len), np.float32)}

    ours, n_params = lmjax_trainer(config, CausalLM(), batch)
    runners = {"lmjax": ours}
    if not args.no_peer:
        try:
            runners["pytorch"] = torch_trainer(config, batch)
        except ImportError:
            print("transformers/torch not installed (pip install -e '.[hf]'): no peer", file=sys.stderr)
    times = time_alternating(runners, args.warmup, args.steps)

    tokens_per_step = batch_size * seq_len
    flops_per_token = train_flops(config.model, {"input_ids": batch["inputs"]}) / tokens_per_step
    print(f"config {args.config} {' '.join(args.overrides)} | XLA flags: {args.xla_flags} | "
          f"{n_params:,} params | batch {batch_size}×{seq_len}")
    print(f"model FLOPs/token (lmjax.scaling.train_flops): {flops_per_token:.4g}")
    peak = device_peak() if args.device else None
    if peak is None:
        peak_size = flops_lib.largest_matmul_size(config.model)
        peak = flops_lib.measure_matmul_peak(peak_size)
        print(f"matmul peak ({peak_size}³ float32, this process): {peak / 1e9:.1f} GFLOP/s")
    rates = {}
    for name, samples in times.items():
        median = statistics.median(samples)
        rates[name] = tokens_per_step / median
        line = f"{name:8s} median step {median * 1e3:8.1f} ms  {rates[name]:10.0f} tokens/s"
        if name == "lmjax":
            achieved = rates[name] * flops_per_token
            line += f"  {achieved / 1e9:.1f} GFLOP/s  MFU {achieved / peak:.1%}"
        print(line)
    if "pytorch" in rates:
        print(f"ratio lmjax/pytorch tokens/s: {rates['lmjax'] / rates['pytorch']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
