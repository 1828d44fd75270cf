"""Per-device memory (`lmjax.scaling.memory`): parameter and optimizer bytes against the train
state lmjax really shards over 8 simulated devices and against hand counts of `gpt_tiny`;
activations against Korthikanti et al. (2022)'s published per-layer formulas; the GPT-3
table in docs/tpu.md against the command that makes it."""

from __future__ import annotations

import pathlib
import re

import jax
import jax.numpy as jnp
import pytest

from lmjax import parallel
from lmjax.config import load_config
from lmjax.errors import ConfigError
from lmjax.models import build_model
from lmjax.scaling.memory import gpt3_table, main, per_device_memory
from lmjax.train.optimizer import make_optimizer
from lmjax.train.state import init_state, state_shardings

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "tpu.md"

# gpt_tiny: vocabulary 256, d_model 64, 2 layers, 4 heads of 16, d_ff 256, 64 positions.
# Per layer: two LayerNorms (2 x 128), q/k/v/o kernels 4 x 64 x 64, q/k/v biases 3 x 64,
# output bias 64, MLP kernels 64 x 256 and 256 x 64 with biases 256 and 64.
LAYER = 2 * 128 + 4 * 64 * 64 + 3 * 64 + 64 + 64 * 256 + 256 + 256 * 64 + 64
TOTAL = 256 * 64 + 64 * 64 + 2 * LAYER + 128  # token and position tables, final LayerNorm
# fsdp=8 splits every parameter with an embed dimension; only the q/k/v and MLP-input biases
# (heads x kv, mlp) have none.
FSDP8 = (TOTAL - 2 * (3 * 64 + 256)) // 8 + 2 * (3 * 64 + 256)
# tensor=4 splits vocab, heads and mlp: the token table, q/k/v/o kernels, q/k/v biases, the
# MLP kernels and input bias; LayerNorms, output biases and the position table stay whole.
TENSOR4 = (256 * 64 // 4 + 64 * 64 + 128
           + 2 * ((4 * 64 * 64 + 3 * 64 + 2 * 64 * 256 + 256) // 4 + 2 * 128 + 2 * 64))
# fsdp=2 x tensor=2: the position table, LayerNorms and output biases halve (embed), the q/k/v
# and MLP-input biases halve (heads, mlp), every kernel and the token table quarter.
FSDP2_TENSOR2 = (256 * 64 // 4 + 64 * 64 // 2 + 128 // 2
                 + 2 * (2 * 128 // 2 + 4 * 64 * 64 // 4 + 3 * 64 // 2 + 64 // 2
                        + 2 * 64 * 256 // 4 + 256 // 2 + 64 // 2))

MESHES = [
    ({"data": 8}, TOTAL),
    ({"fsdp": 8}, FSDP8),
    ({"data": 2, "tensor": 4}, TENSOR4),
    ({"data": 2, "fsdp": 2, "tensor": 2}, FSDP2_TENSOR2),
]


def tiny(*overrides: str):
    return load_config("gpt_tiny", list(overrides))


def test_hand_counts_match_the_model():
    assert TOTAL == 120_576  # lmjax.scaling.param_counts(gpt_tiny).total


@pytest.mark.parametrize("mesh_shape, elements", MESHES)
def test_state_bytes_match_hand_counts(mesh_shape, elements):
    result = per_device_memory(tiny(), mesh_shape)
    assert result["params"] == 4 * elements
    assert result["optimizer"] == 8 * elements
    assert result["gradients"] == 4 * elements


@pytest.mark.parametrize("mesh_shape, elements", [MESHES[1], MESHES[3]])
def test_state_bytes_match_the_sharded_train_state(mesh_shape, elements):
    """Device 0's shards of the train state lmjax creates (unscanned layers, whereas the
    estimate traces scanned ones) hold exactly the estimated parameter and Adam bytes."""
    config = tiny(*(f"mesh.{axis}={size}" for axis, size in mesh_shape.items()))
    mesh, rules = parallel.make_mesh(config.mesh), parallel.axis_rules(config.mesh)
    model, optimizer = build_model(config.model), make_optimizer(config.train)
    example = {"input_ids": jnp.zeros((1, 1), jnp.int32)}
    shardings = state_shardings(model, optimizer, example, mesh, rules)
    state = init_state(model, optimizer, example, jax.random.key(0), shardings, mesh, rules)
    device = jax.devices()[0]

    def on_device(tree, min_ndim=0):
        return sum(shard.data.nbytes for leaf in jax.tree.leaves(tree) if leaf.ndim >= min_ndim
                   for shard in leaf.addressable_shards if shard.device == device)

    result = per_device_memory(config, mesh_shape)
    assert on_device(state["params"]) == result["params"] == 4 * elements
    assert on_device(state["opt_state"], min_ndim=1) == result["optimizer"]  # without step counts


def test_grad_accumulation_keeps_two_gradient_copies():
    one = per_device_memory(tiny(), {"fsdp": 2})
    two = per_device_memory(tiny("train.grad_accum_steps=2"), {"fsdp": 2})
    assert two["gradients"] == 2 * one["gradients"]
    assert two["batch_per_device"] == one["batch_per_device"] // 2


# Korthikanti et al. (2022), "Reducing Activation Recomputation in Large Transformer Models":
# bytes per layer with 16-bit activations, s sequence, b batch, h hidden, a heads, t tensor size:
# eq. 1: s·b·h·(34 + 5·a·s/h); eq. 2 (tensor parallel): s·b·h·(10 + 24/t + 5·a·s/(h·t)).
# lmjax has no dropout, so take off its masks (s·b·h and a·s²·b bytes per mask) and output
# (2·a·s²·b): 2·s·b·h + 3·a·s²·b in eq. 1, and 2·s·b·h + 3·a·s²·b/t in eq. 2.
def korthikanti_layer(s, b, h, a, t=1):
    return s * b * h * (10 + 24 / t + 5 * a * s / (h * t)) - 2 * s * b * h - 3 * a * s * s * b / t


S, B, H, HEADS, V, L = 32, 8, 64, 4, 256, 2


def test_layer_activations_match_korthikanti_without_dropout():
    config = tiny("model.dtype=bfloat16")
    parts = per_device_memory(config, {"data": 1})["activation_parts"]
    assert parts["layers"] == L * korthikanti_layer(S, B, H, HEADS)
    assert parts["recomputed_layer"] == 0
    tensor = per_device_memory(config, {"tensor": 2})["activation_parts"]
    assert tensor["layers"] == L * korthikanti_layer(S, B, H, HEADS, t=2)


def test_full_remat_keeps_layer_inputs_and_one_recomputed_layer():
    parts = per_device_memory(tiny("model.dtype=bfloat16", "model.remat=full"),
                              {"data": 1})["activation_parts"]
    assert parts["layers"] == L * 2 * S * B * H  # Korthikanti's full recomputation: 2·s·b·h·L
    assert parts["recomputed_layer"] == korthikanti_layer(S, B, H, HEADS)


def test_dots_saveable_keeps_matmul_outputs():
    """Layer input, q, k, v, attention projection output, MLP pre-activation (4h) and MLP
    output: 10 h-wide tensors of 2 bytes per token and layer."""
    parts = per_device_memory(tiny("model.dtype=bfloat16", "model.remat=dots_saveable"),
                              {"data": 1})["activation_parts"]
    assert parts["layers"] == L * 10 * 2 * S * B * H


def test_head_and_gathered_weights():
    parts = per_device_memory(tiny("model.dtype=bfloat16"), {"data": 1})["activation_parts"]
    assert parts["head"] == 2 * S * B * H * 2 + 2 * 4 * S * B * V  # final norm; f32 logits, grad
    layer_weights = 2 * 64 * 64 + 2 * 64 * 64 + 2 * 64 * 256  # q+o, k+v, MLP in and out
    assert parts["gathered_weights"] == V * H * 4 + 2 * layer_weights


def test_data_parallelism_divides_activations_not_state():
    one = per_device_memory(tiny(), {"data": 1})
    eight = per_device_memory(tiny(), {"data": 8})
    assert (eight["params"], eight["optimizer"]) == (one["params"], one["optimizer"])
    assert eight["activation_parts"]["layers"] * 8 == one["activation_parts"]["layers"]
    assert eight["activation_parts"]["head"] * 8 == one["activation_parts"]["head"]
    fsdp = per_device_memory(tiny(), {"fsdp": 8})
    assert fsdp["activation_parts"]["layers"] == eight["activation_parts"]["layers"]
    assert fsdp["total"] < eight["total"]


def test_float32_activations_double_bfloat16():
    half = per_device_memory(tiny("model.dtype=bfloat16"), {"data": 1})["activation_parts"]
    full = per_device_memory(tiny(), {"data": 1})["activation_parts"]
    assert full["layers"] == 2 * half["layers"]
    assert per_device_memory(tiny(), {"data": 1}, dtype_bytes=2)["activation_parts"] == half


@pytest.mark.parametrize("mesh_shape, message", [
    ({"model": 2}, "unknown mesh axis 'model'"),
    ({"fsdp": 0}, "mesh axis fsdp=0 must be at least 1"),
])
def test_bad_meshes_are_one_line_errors(mesh_shape, message):
    with pytest.raises(ConfigError, match=message):
        per_device_memory(tiny(), mesh_shape)


def test_command_prints_the_breakdown(capsys):
    assert main(["--config", "gpt_tiny", "--mesh", "fsdp=8"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"params:\s+0\.000 GB", out) and "recomputed_layer" in out


def test_docs_table_is_the_commands_output():
    """docs/tpu.md's GPT-3 budget is what `python -m lmjax.scaling.memory --gpt3-table
    --mesh fsdp=256 --hbm-gb 95` prints today."""
    text = DOCS.read_text()
    table = "\n".join(line for line in text.splitlines() if line.startswith("| gpt3-")
                      or line.startswith("| preset |") or line.startswith("|---|---|---|---|---|---|---|"))
    assert table == gpt3_table({"fsdp": 256}, 95.0)


def test_t5_decoder_layers_add_cross_attention_and_bert_predicts_15_percent():
    """t5_tiny and bert_tiny have gpt_tiny's widths. A T5 decoder layer also keeps the
    cross-attention's norm output, queries, encoder keys and values, probabilities, output
    and residual; BERT's logits exist at round(0.15 · 32) = 5 positions per sequence."""
    gpt = per_device_memory(tiny("model.dtype=bfloat16"), {"data": 1})["activation_parts"]
    t5 = per_device_memory(load_config("t5_tiny", ["model.dtype=bfloat16"]), {"data": 1})
    bert = per_device_memory(load_config("bert_tiny", ["model.dtype=bfloat16"]), {"data": 1})
    cross = 2 * B * (S * H + H * S + 2 * H * S + HEADS * S * S + H * S + S * H)
    assert t5["activation_parts"]["layers"] == 2 * gpt["layers"] + L * cross
    assert t5["activation_parts"]["head"] == gpt["head"]
    assert bert["activation_parts"]["layers"] == gpt["layers"]
    assert bert["activation_parts"]["head"] == 2 * S * B * H * 2 + 2 * 4 * 5 * B * V
