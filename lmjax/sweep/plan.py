"""What a point will cost, from its config alone: N, D, C, time and memory per device.

N comes from `lmjax.scaling.param_counts` (an abstract init, nothing allocated), C from
`lmjax.scaling.train_flops` over the batch shapes the objective gives (GPT: B×T; BERT: the
masked positions, BERT's max_predictions_per_seq; T5: the span-corrupted input and target
lengths) times the steps. D counts the tokens that carry loss (BERT: its predicted positions,
an upper bound; the trainer reports the exact count).

Time on this machine is C divided by a measured FLOP rate: `measured_flop_rate` compiles one
point and times a few of its steps. For a described accelerator mesh (`target:` in the sweep
file) time is C / (devices × peak × MFU) at the stated MFU, and memory per device is
`lmjax.scaling.memory.per_device_memory` on the target's mesh (parameters, gradients and
Adam's moments sharded as the axis rules shard them; activations after Korthikanti et al.
2022, with the config's rematerialisation).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import Any

from lmjax.config import Config, mesh_axis_sizes
from lmjax.objectives.span_corruption import random_spans_helper


def input_shapes(config: Config) -> dict[str, tuple[int, int]]:
    """The model inputs of one global batch, as the objective would shape them."""
    batch, seq_len, data = config.train.global_batch_size, config.data.seq_len, config.data
    if data.objective == "span_corruption":
        _, targets = random_spans_helper(seq_len, data.noise_density, data.mean_noise_span_length)
        return {"input_ids": (batch, seq_len), "decoder_input_ids": (batch, targets)}
    if data.objective == "masked_lm":
        framed = seq_len - 2  # [CLS] and [SEP]
        return {"input_ids": (batch, seq_len),
                "masked_positions": (batch, max(1, round(framed * data.mask_prob)))}
    return {"input_ids": (batch, seq_len)}


def loss_tokens_per_batch(config: Config) -> int:
    shapes = input_shapes(config)
    name = {"span_corruption": "decoder_input_ids", "masked_lm": "masked_positions"}.get(
        config.data.objective, "input_ids")
    batch, length = shapes[name]
    return batch * length


def estimate(config: Config) -> dict[str, Any]:
    """N (total, embedding, non-embedding), D (loss tokens), input tokens and C (training FLOPs)."""
    from lmjax.scaling import param_counts, train_flops

    counts = param_counts(config.model)
    shapes = input_shapes(config)
    steps = config.train.steps
    return {
        "parameters": counts.total, "embedding_parameters": counts.embedding,
        "non_embedding_parameters": counts.non_embedding,
        "tokens": steps * loss_tokens_per_batch(config),
        "input_tokens": steps * sum(b * t for name, (b, t) in shapes.items() if name.endswith("input_ids")),
        "train_flops": steps * train_flops(config.model, shapes),
    }


def measured_flop_rate(config: Config, steps: int = 3) -> float:
    """Model FLOP/s of `config`'s compiled train step on this machine, timed over `steps`
    steps after one compiling step, in a temporary run directory (nothing of the sweep's)."""
    import jax

    from lmjax import parallel
    from lmjax.train.setup import build_setup

    with tempfile.TemporaryDirectory() as run_dir:
        setup = build_setup(dataclasses.replace(config, run_dir=run_dir))
        state = setup.new_state()
        with parallel.activate(setup.mesh, setup.rules):
            batch = parallel.global_batch(next(setup.batches("train")), setup.mesh)
            state, metrics = setup.train_step(state, batch)
            jax.block_until_ready(metrics)
            start = time.perf_counter()
            for _ in range(steps):
                state, metrics = setup.train_step(state, batch)
            jax.block_until_ready(metrics)
            elapsed = time.perf_counter() - start
    return steps * setup.flops_per_batch / elapsed


def target_estimate(config: Config, target: dict[str, Any], flops: float) -> dict[str, Any]:
    """Time at the target's MFU and memory per device on a described mesh (e.g. v5p-256)."""
    from lmjax.scaling.memory import per_device_memory

    devices = int(target["devices"])
    memory = per_device_memory(config, mesh_axis_sizes(config.mesh, devices))
    peak, mfu = float(target["peak_flops"]), float(target.get("mfu", 0.4))
    return {
        "target": target.get("name", f"{devices} devices"),
        "state_bytes_per_device": memory["params"] + memory["optimizer"] + memory["gradients"],
        "activation_bytes_per_device": memory["activations"],
        "memory_per_device": memory["total"],
        "memory_limit": float(target.get("memory_per_device", 0)) or None,
        "target_seconds": flops / (devices * peak * mfu),
        "mfu": mfu,
    }
