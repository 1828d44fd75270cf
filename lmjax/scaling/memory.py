"""Per-device memory of training a config on a mesh: parameters, optimizer state, gradients
and activations, from the shapes alone (nothing is allocated, no device is needed).

Every array is split as training splits it: each dimension's logical name goes through the
config's `mesh.axis_rules` (flax's `logical_to_mesh_axes`, as `lmjax.parallel` does), and a
dimension of size n on mesh axes of total size k takes ceil(n / k) per device.

Model state (from `jax.eval_shape` of the model's init, with `scan_layers` for speed):
  parameters  4 bytes per element (float32 master weights, whatever the compute dtype)
  optimizer   8 bytes per parameter element (AdamW's two float32 moments, sharded alike)
  gradients   4 bytes per parameter element; twice that with `train.grad_accum_steps` > 1
              (the accumulator and the microbatch's gradients live together)

Activations (an estimate, in the compute dtype's `a` bytes unless stated): per device the
microbatch holds b = global_batch / grad_accum / (data·fsdp) sequences of length s. One
transformer layer saves, for the backward pass, with h = d_model, heads n of size k, G
key/value heads, F = d_ff and no dropout (lmjax has none):

  layer input, norm output, residual after attention, norm output    4 · s·b·h
  queries, keys, values, attention output (before its projection)    (2n + 2G)·k · s·b
  softmax probabilities                                               n · s² · b
  MLP pre-activation (two for gated MLPs) and activation              2F (3F gated) · s·b

times a bytes. For GPT-3's shapes (n·k = h, G = n, F = 4h) in 16-bit that is
s·b·h·(32 + 2·n·s/h) bytes per layer: Korthikanti et al. (2022, "Reducing Activation
Recomputation in Large Transformer Models", eq. 1) without their 2·s·b·h + n·s²·b of dropout
masks and 2·n·s²·b of dropout outputs. Tensor parallelism divides the head and MLP terms by
the tensor size (their eq. 2, without sequence parallelism). T5's decoder layers add the
cross-attention's norm output, queries, encoder keys and values, probabilities, output and
residual. With `model.remat`:

  none           every layer keeps all of the above
  full           every layer keeps its input (2·s·b·h in 16-bit, Korthikanti's full
                 recomputation), plus one layer's full set recomputed during its backward
  dots_saveable  every layer keeps its input and the outputs of its matmuls without batch
                 dimensions (jax's dots_with_no_batch_dims_saveable): queries, keys, values,
                 the attention projection's output, the MLP pre-activations and the MLP
                 output; plus one layer's full set recomputed

Beside the layers: the final norm's input and output (2·s·b·h·a), the logits and their
gradient in float32 (2 · 4 · s·b·V / tensor; BERT at its 15% predicted positions), the
embedding table gathered for the lookup (V·h·4, as `Embed` does) and one layer's weights
gathered over fsdp in the compute dtype. Not counted: XLA's temporaries and fusion buffers,
collective buffers, fragmentation; plan for some 10-20% above the total.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn

from lmjax import parallel
from lmjax.config import Config, ModelConfig, load_config
from lmjax.errors import ConfigError
from lmjax.models.platform import compute_dtype_name
from lmjax.models.layers import GATED
from lmjax.scaling.compute import MLM_PREDICTED_SHARE
from lmjax.scaling.params import abstract_params

PARAM_BYTES = 4  # float32 master weights
ADAM_BYTES = 8  # two float32 moments
GRAD_BYTES = 4
MODEL_AXES = ("batch", "length", "embed")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}


NONE, FULL, DOTS = "none", "full", "dots_saveable"


@dataclasses.dataclass(frozen=True)
class Saved:
    """One activation a layer keeps for its backward pass under the `model.remat` modes in
    `keeps` (by default only without remat)."""

    name: str
    axes: tuple[str | None, ...]
    shape: tuple[int, ...]
    itemsize: int
    keeps: frozenset[str] = frozenset({NONE})


def per_device_memory(
    config: Config, mesh_shape: Mapping[str, int], dtype_bytes: int | None = None
) -> dict[str, Any]:
    """Bytes per device of training `config` on a mesh of `mesh_shape` axis sizes.

    `mesh_shape` maps mesh axes (data, fsdp, tensor) to sizes; absent axes have size 1.
    `dtype_bytes` is the activations' element size (default: the config's `model.dtype`).
    Returns params, optimizer, gradients, activations and total in bytes, the activations
    split into layers / head / gathered, and the mesh, per-device batch and sequence used.
    """
    sizes = mesh_sizes(mesh_shape)
    rules = parallel.axis_rules(config.mesh)
    param_elements = sum(
        shard_elements(leaf.value.shape, leaf.names, sizes, rules)
        for leaf in abstract_params(dataclasses.replace(config.model, scan_layers=True))
    )
    act_bytes = dtype_bytes or DTYPE_BYTES[compute_dtype_name(config.model.dtype)]
    activations = activation_bytes(config, sizes, rules, act_bytes)
    state = {
        "params": param_elements * PARAM_BYTES,
        "optimizer": param_elements * ADAM_BYTES,
        "gradients": param_elements * GRAD_BYTES * (2 if config.train.grad_accum_steps > 1 else 1),
    }
    return {
        **state,
        "activations": activations["total"],
        "total": sum(state.values()) + activations["total"],
        "activation_parts": activations,
        "mesh": sizes,
        "batch_per_device": microbatch_per_device(config, sizes),
        "seq_len": config.data.seq_len,
    }


def mesh_sizes(mesh_shape: Mapping[str, int]) -> dict[str, int]:
    """All three mesh axes with their sizes; a one-line error for unknown axes or sizes < 1."""
    unknown = set(mesh_shape) - set(parallel.MESH_AXES)
    if unknown:
        raise ConfigError(f"unknown mesh axis {sorted(unknown)[0]!r}: use {', '.join(parallel.MESH_AXES)}")
    sizes = {axis: int(mesh_shape.get(axis, 1)) for axis in parallel.MESH_AXES}
    for axis, size in sizes.items():
        if size < 1:
            raise ConfigError(f"mesh axis {axis}={size} must be at least 1")
    return sizes


def shard_elements(shape: Sequence[int], names: Sequence[str | None], sizes: Mapping[str, int],
                   rules: parallel.Rules) -> int:
    """Elements of one device's shard of an array whose dimensions carry logical `names`."""
    spec = nn.logical_to_mesh_axes(tuple(names), rules)
    total = 1
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        axes = () if axes is None else (axes,) if isinstance(axes, str) else axes
        total *= math.ceil(dim / math.prod(sizes[axis] for axis in axes))
    return total


def microbatch_per_device(config: Config, sizes: Mapping[str, int]) -> int:
    """Sequences per device in one microbatch (rounded up where the split is uneven)."""
    micro = config.train.global_batch_size // config.train.grad_accum_steps
    return math.ceil(micro / (sizes["data"] * sizes["fsdp"]))


def activation_bytes(config: Config, sizes: Mapping[str, int], rules: parallel.Rules,
                     act_bytes: int) -> dict[str, int]:
    """The activation estimate of the module docstring, split into its parts, in bytes."""
    cfg = config.model
    batch, seq = microbatch_per_device(config, sizes), config.data.seq_len
    stacks = _stacks(cfg, seq, act_bytes)

    def resident(tensors: list[Saved], mode: str) -> int:
        return sum(shard_elements(t.shape, t.axes, sizes, rules) * t.itemsize * (
            batch if t.axes[:1] == ("batch",) else 1) for t in tensors if mode in t.keeps)

    layers = sum(count * resident(tensors, cfg.remat) for count, tensors in stacks)
    recomputed = 0 if cfg.remat == NONE else max(resident(tensors, NONE) for _, tensors in stacks)
    head = resident(_head(cfg, seq, act_bytes), NONE)
    gathered = resident(_gathered(cfg, act_bytes), NONE)
    return {"layers": layers, "recomputed_layer": recomputed, "head": head,
            "gathered_weights": gathered, "total": layers + recomputed + head + gathered}


def _stacks(cfg: ModelConfig, s: int, a: int) -> list[tuple[int, list[Saved]]]:
    """(layer count, what one layer of the stack saves): T5 has an encoder and a decoder,
    the decoder's length taken as the input length (an upper bound for span corruption).
    Batch dimensions have size 1 here; `activation_bytes` multiplies by the device's batch."""
    if cfg.arch == "t5":
        return [(cfg.n_layers, _block(cfg, s, None, a)), (cfg.decoder_layers, _block(cfg, s, s, a))]
    return [(cfg.n_layers, _block(cfg, s, None, a))]


def _block(cfg: ModelConfig, s: int, cross_len: int | None, a: int) -> list[Saved]:
    """What one layer saves; `cross_len` adds a cross-attention over that many positions."""
    d, f = cfg.d_model, cfg.d_ff
    hidden = ("batch", "length", "mlp")
    saved = [Saved("layer input", MODEL_AXES, (1, s, d), a, frozenset({NONE, FULL, DOTS}))]
    saved += _attention("self", cfg, s, s, a)
    if cross_len is not None:
        saved += _attention("cross", cfg, s, cross_len, a)
    saved += [Saved("norm before MLP", MODEL_AXES, (1, s, d), a)]
    saved += [Saved(f"MLP pre-activation {i}", hidden, (1, s, f), a, frozenset({NONE, DOTS}))
              for i in range(2 if cfg.mlp in GATED else 1)]
    saved += [Saved("MLP activation", hidden, (1, s, f), a),
              Saved("MLP output", MODEL_AXES, (1, s, d), a, frozenset({DOTS}))]
    return saved


def _attention(kind: str, cfg: ModelConfig, s: int, keys: int, a: int) -> list[Saved]:
    """An attention sub-block's saved tensors; the projection's output is a dot output kept
    only by dots_saveable (without remat the residual sum after it is what is kept)."""
    n, g, k, d = cfg.n_heads, cfg.kv_heads, cfg.d_head, cfg.d_model
    dots = frozenset({NONE, DOTS})
    heads, kv_heads = ("batch", "length", "heads", "kv"), ("batch", "length", "kv_heads", "kv")
    return [
        Saved(f"{kind} norm output", MODEL_AXES, (1, s, d), a),
        Saved(f"{kind} queries", heads, (1, s, n, k), a, dots),
        Saved(f"{kind} keys", kv_heads, (1, keys, g, k), a, dots),
        Saved(f"{kind} values", kv_heads, (1, keys, g, k), a, dots),
        Saved(f"{kind} probabilities", ("batch", "heads", "length", None), (1, n, s, keys), a),
        Saved(f"{kind} attention output", heads, (1, s, n, k), a),
        Saved(f"{kind} projection output", MODEL_AXES, (1, s, d), a, frozenset({DOTS})),
        Saved(f"residual after {kind} attention", MODEL_AXES, (1, s, d), a),
    ]


def _head(cfg: ModelConfig, s: int, a: int) -> list[Saved]:
    """The final norm's input and output and the float32 logits with their gradient, at
    every position (BERT: at its predicted 15%; T5: over the decoder's positions)."""
    rows = max(1, round(MLM_PREDICTED_SHARE * s)) if cfg.arch == "bert" else s
    logits = ("batch", "length", "vocab")
    return [Saved("final norm input", MODEL_AXES, (1, s, cfg.d_model), a),
            Saved("final norm output", MODEL_AXES, (1, s, cfg.d_model), a),
            Saved("logits", logits, (1, rows, cfg.vocab_size), 4),
            Saved("logits gradient", logits, (1, rows, cfg.vocab_size), 4)]


def _gathered(cfg: ModelConfig, a: int) -> list[Saved]:
    """Weights materialised whole: the embedding table `Embed` gathers for its lookup
    (float32), and one layer's matrices gathered over fsdp in the compute dtype (still split
    over tensor)."""
    n, g, k, d, f = cfg.n_heads, cfg.kv_heads, cfg.d_head, cfg.d_model, cfg.d_ff
    mlp_in = 2 if cfg.mlp in GATED else 1
    return [Saved("embedding table", (None, None), (cfg.vocab_size, d), 4),
            Saved("layer queries and output weights", (None, "heads", "kv"), (2 * d, n, k), a),
            Saved("layer key and value weights", (None, "kv_heads", "kv"), (2 * d, g, k), a),
            Saved("layer MLP weights", (None, "mlp"), ((mlp_in + 1) * d, f), a)]


# GPT-3's batch sizes (Brown et al. 2020, Table 2.1) in 2,048-token sequences: 0.5M, 1M and
# 2M tokens are 2^19, 2^20 and 2^21; 175B's 3.2M is taken as 1,536 sequences (3.1M tokens,
# Megatron-LM's GPT-3 175B setting), which divides evenly over 256 or 512 chips.
GPT3_BATCH = {"gpt3-small": 256, "gpt3-medium": 256, "gpt3-large": 256, "gpt3-xl": 512,
              "gpt3-2.7b": 512, "gpt3-6.7b": 1024, "gpt3-13b": 1024, "gpt3-175b": 1536}
GB = 1e9


def preset_config(preset: str, overrides: Sequence[str] = ()) -> Config:
    """The `gpt3_small` run config (2,048-token sequences) with `model.preset=preset`."""
    return load_config("gpt3_small", [f"model.preset={preset}", *overrides])


def gpt3_table(mesh_shape: Mapping[str, int], hbm_gb: float, overrides: Sequence[str] = ()) -> str:
    """A Markdown table of every GPT-3 preset's per-chip memory on `mesh_shape`, in bf16 at
    its Table 2.1 batch, without remat and with full remat, against `hbm_gb` per chip."""
    lines = ["| preset | batch (seqs) | seqs per chip | params | Adam | grads | activations, no remat "
             "| total | activations, full remat | total | fits in "
             f"{hbm_gb:g} GB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for preset, batch in GPT3_BATCH.items():
        common = [f"train.global_batch_size={batch}", "model.dtype=bfloat16", *overrides]
        plain = per_device_memory(preset_config(preset, [*common, "model.remat=none"]), mesh_shape)
        remat = per_device_memory(preset_config(preset, [*common, "model.remat=full"]), mesh_shape)
        fits = "no remat" if plain["total"] <= hbm_gb * GB else (
            "full remat" if remat["total"] <= hbm_gb * GB else "no")
        lines.append(
            f"| {preset} | {batch} | {plain['batch_per_device']} | {plain['params'] / GB:.3f} | "
            f"{plain['optimizer'] / GB:.3f} | {plain['gradients'] / GB:.3f} | "
            f"{plain['activations'] / GB:.1f} | {plain['total'] / GB:.1f} | "
            f"{remat['activations'] / GB:.1f} | {remat['total'] / GB:.1f} | {fits} |")
    return "\n".join(lines)


def parse_mesh(text: str) -> dict[str, int]:
    """`fsdp=256,tensor=4` -> {"fsdp": 256, "tensor": 4}."""
    sizes = {}
    for part in filter(None, text.split(",")):
        axis, _, size = part.partition("=")
        if not size.isdigit():
            raise ConfigError(f"--mesh part {part!r} is not AXIS=SIZE, e.g. --mesh fsdp=256,tensor=4")
        sizes[axis.strip()] = int(size)
    return mesh_sizes(sizes)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m lmjax.scaling.memory --preset gpt3-175b --mesh fsdp=256 [KEY=VALUE ...]`,
    or `--gpt3-table` for every GPT-3 preset (the table in docs/tpu.md)."""
    parser = argparse.ArgumentParser(prog="python -m lmjax.scaling.memory",
                                     description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a model preset on the gpt3_small run config")
    source.add_argument("--config", help="a named config or YAML file")
    source.add_argument("--gpt3-table", action="store_true", help="every GPT-3 preset, as Markdown")
    parser.add_argument("--mesh", default="data=1", help="axis sizes, e.g. fsdp=256,tensor=4")
    parser.add_argument("--hbm-gb", type=float, default=95.0, help="memory per chip (v5p: 95)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    mesh = parse_mesh(args.mesh)
    if args.gpt3_table:
        print(gpt3_table(mesh, args.hbm_gb, args.overrides))
        return 0
    config = (preset_config(args.preset, args.overrides) if args.preset
              else load_config(args.config, args.overrides))
    result = per_device_memory(config, mesh)
    print(f"mesh {result['mesh']}, {result['batch_per_device']} sequences of {result['seq_len']} "
          f"per device, remat={config.model.remat}, dtype={config.model.dtype}")
    for key in ("params", "optimizer", "gradients", "activations", "total"):
        print(f"{key:>12}: {result[key] / GB:10.3f} GB")
    for key, value in result["activation_parts"].items():
        print(f"{'':>14}{key}: {value / GB:.3f} GB")
    return 0


if __name__ == "__main__":
    import sys

    try:
        sys.exit(main())
    except ConfigError as err:
        print(f"lmjax.scaling.memory: error: {err}", file=sys.stderr)
        sys.exit(2)
