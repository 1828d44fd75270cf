"""Compression: int8 quantization, magnitude pruning and distillation, against hand-derived
bounds and formulas, on tiny models and on the real stories260K."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.cli import main
from lmjax.config import ModelConfig, TrainConfig
from lmjax.errors import ConfigError
from lmjax.models import build_model
from lmjax.posttrain import distill, prune, quantize
from lmjax.runs import abstract_params, open_run
from test_posttrain_engine import assert_same_run, deterministic, kill_after_checkpoint

LLAMA = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, max_len=32,
                    norm="rmsnorm", position="rope", mlp="swiglu", use_bias=False, tie_embeddings=False)


def _params(config: ModelConfig, seed: int = 0):
    """Random parameters of the model's shapes, drawn with numpy (compiling the model's own
    initialisers costs tens of seconds on a busy CPU)."""
    rng = np.random.default_rng(seed)
    shapes = abstract_params(config)
    return build_model(config), jax.tree.map(
        lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), shapes)


@pytest.fixture(scope="module")
def stories(data_dir):
    return open_run(data_dir / "stories260K" / "stories260K.bin")


@pytest.mark.parametrize("scan", [False, True])
def test_dequantize_error_at_most_half_a_scale_and_scales_per_output_channel(scan):
    config = dataclasses.replace(LLAMA, scan_layers=scan)
    _, params = _params(config)
    quantized = quantize.quantize(params, config, embeddings=True)
    pairs = jax.tree.leaves(jax.tree.map(lambda w, q: (w, q), params, quantized,
                                         is_leaf=lambda n: isinstance(n, quantize.QTensor)),
                            is_leaf=lambda n: isinstance(n, tuple))
    # 7 kernels per layer (4 attention, 3 SwiGLU), the output layer and the embedding table
    assert sum(isinstance(q, quantize.QTensor) for _, q in pairs) == (7 + 2 if scan else 2 * 7 + 2)
    for w, q in pairs:
        if isinstance(q, quantize.QTensor):
            assert q.values.dtype == jnp.int8
            error = np.abs(np.asarray(q.dequantize()) - np.asarray(w))
            assert np.all(error <= np.asarray(q.scale) / 2 * (1 + 1e-6))
    layer = quantized["h"] if scan else quantized["h_1"]
    raw = params["h"] if scan else params["h_1"]
    out_w, out_q = np.asarray(raw["attn"]["out"]["kernel"]), layer["attn"]["out"]["kernel"]
    # the output projection (heads, kv, embed) has one scale per output feature (and layer)
    inputs = (1, 2) if scan else (0, 1)
    np.testing.assert_allclose(np.asarray(out_q.scale), np.abs(out_w).max(axis=inputs, keepdims=True) / 127,
                               rtol=1e-6)
    wi_w = np.asarray(raw["mlp"]["wi"]["kernel"])
    assert layer["mlp"]["wi"]["kernel"].scale.shape == (*wi_w.shape[:-2], 1, wi_w.shape[-1])
    table = np.asarray(params["wte"]["embedding"])
    np.testing.assert_allclose(np.asarray(quantized["wte"]["embedding"].scale),
                               np.abs(table).max(axis=1, keepdims=True) / 127, rtol=1e-6)


def test_one_kernel_error_within_the_rounding_bound():
    """|x·Ŵ − x·W|_j ≤ Σ_i |x_i| · s_j / 2: each weight moves at most half its scale."""
    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((48, 20)).astype(np.float32), rng.standard_normal((5, 48)).astype(np.float32)
    q = quantize.quantize_array(w, (0,))
    error = np.abs(x @ np.asarray(q.dequantize()) - x @ w)
    bound = np.abs(x).sum(axis=1, keepdims=True) * np.asarray(q.scale) / 2
    assert np.all(error <= bound * (1 + 1e-5)) and error.max() > 0


def test_stories260k_quantized_logits_close_to_float(stories):
    """Rounding a weight to its int8 grid adds noise of rms s/√12 with s = max|w|/127, i.e.
    relative to the kernels' rms (max/rms ≈ 4–6 here) about 1% per matmul; 11 matmuls in a
    row, partly averaging out, move the logits by a few percent of their spread at most. So
    rms(Δlogits) ≤ 3% of the rms of the (centred) logits."""
    ids = jnp.asarray(np.random.default_rng(0).integers(3, 512, size=(4, 64)), jnp.int32)
    float_logits = jax.jit(stories.model.apply)({"params": stories.params}, ids)
    q_model = quantize.Dequantized(stories.model)
    q_params = quantize.quantize(stories.params, stories.config.model)
    q_logits = jax.jit(q_model.apply)({"params": q_params}, ids)
    centred = float_logits - float_logits.mean(axis=-1, keepdims=True)
    assert float(jnp.sqrt(jnp.mean((q_logits - float_logits) ** 2))) <= 0.03 * float(jnp.sqrt(jnp.mean(centred ** 2)))
    assert quantize.size_bytes(q_params) < 0.4 * quantize.size_bytes(stories.params)


def test_quantize_refuses_a_non_float_tree(stories):
    ids_tree = {"wte": {"embedding": jnp.zeros((4, 2), jnp.int32)}}
    with pytest.raises(ConfigError, match=r"cannot quantize \['wte'\]\['embedding'\] of dtype int32"):
        quantize.quantize(ids_tree, stories.config.model)
    q_params = quantize.quantize(stories.params, stories.config.model)
    with pytest.raises(ConfigError, match="already quantized"):
        quantize.quantize(q_params, stories.config.model)
    with pytest.raises(ConfigError, match="do not belong to the given model config"):
        quantize.quantize(stories.params, LLAMA)


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.9])
def test_pruning_hits_the_exact_sparsity_and_drops_the_smallest(scope, sparsity):
    _, params = _params(LLAMA)
    pruned = prune.prune(params, sparsity, scope)
    kernels = [(path, np.asarray(w), np.asarray(p)) for (path, w), p in zip(
        jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(pruned)) if path[-1].key == "kernel"]
    groups = [kernels] if scope == "global" else [[k] for k in kernels]
    for group in groups:
        before = np.concatenate([w.reshape(-1) for _, w, _ in group])
        after = np.concatenate([p.reshape(-1) for _, _, p in group])
        assert np.sum(after == 0) == round(sparsity * before.size)
        dropped, kept = np.abs(before[after == 0]), np.abs(before[after != 0])
        assert dropped.size == 0 or dropped.max() <= kept.min()
        np.testing.assert_array_equal(after[after != 0], before[after != 0])
    np.testing.assert_array_equal(pruned["wte"]["embedding"], params["wte"]["embedding"])
    np.testing.assert_array_equal(pruned["h_0"]["ln_1"]["scale"], params["h_0"]["ln_1"]["scale"])


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_a_one_line_error(sparsity):
    _, params = _params(LLAMA)
    with pytest.raises(ConfigError, match=r"must lie in \[0, 1\)") as err:
        prune.prune(params, sparsity)
    assert "\n" not in str(err.value)


def test_distillation_loss_equals_hand_computed_kl():
    teacher = np.array([2.0, 0.0, -1.0])
    student = np.array([0.5, 1.0, 0.0])
    temperature = 2.0
    p = np.exp(teacher / temperature) / np.exp(teacher / temperature).sum()
    q = np.exp(student / temperature) / np.exp(student / temperature).sum()
    expected = temperature ** 2 * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    got = distill.distillation_loss(jnp.asarray(student)[None, None], jnp.asarray(teacher)[None, None],
                                    temperature)
    assert float(got[0, 0]) == pytest.approx(expected, rel=1e-5)
    same = distill.distillation_loss(jnp.asarray(teacher), jnp.asarray(teacher), 3.0)
    assert float(same) == pytest.approx(0, abs=1e-6)


def test_the_default_distillation_is_the_plain_kl_at_temperature_1():
    """The docs and `lmjax compress distill` say T = 1 by default: the loss is then
    KL(softmax(teacher) ‖ softmax(student)) itself, summed over positions."""
    teacher, student = np.array([[2.0, 0.0, -1.0]]), np.array([[0.5, 1.0, 0.0]])
    p = np.exp(teacher) / np.exp(teacher).sum()
    q = np.exp(student) / np.exp(student).sum()
    expected = float((p * np.log(p / q)).sum())
    batch = {"targets": jnp.zeros((1, 1), jnp.int32), "weights": jnp.ones((1, 1)),
             "teacher_logits": jnp.asarray(teacher, jnp.float32)[None]}
    got = distill.Distillation().loss(jnp.asarray(student, jnp.float32)[None], batch)[0]
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_distillation_objective_mixes_soft_and_hard_losses():
    rng = np.random.default_rng(0)
    logits, teacher = (jnp.asarray(rng.standard_normal((2, 3, 5)), jnp.float32) for _ in range(2))
    batch = {"targets": jnp.asarray(rng.integers(0, 5, (2, 3))), "weights": jnp.ones((2, 3)),
             "teacher_logits": teacher}
    soft = distill.Distillation(temperature=1.5).loss(logits, batch)[0]
    hard = distill.Distillation(hard_weight=1.0).loss(logits, batch)[0]
    mixed = distill.Distillation(temperature=1.5, hard_weight=0.25).loss(logits, batch)[0]
    log_q = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(log_q, batch["targets"][..., None], axis=-1).sum()
    assert float(hard) == pytest.approx(float(nll), rel=1e-5)
    assert float(mixed) == pytest.approx(0.75 * float(soft) + 0.25 * float(hard), rel=1e-5)


def test_distillation_loss_decreases(tmp_path):
    """Rows follow a fixed successor rule and the 'teacher' puts its mass on that successor,
    so a one-layer student can match it within a few steps."""
    successor = lambda ids: (3 * ids + 1) % 64  # noqa: E731
    starts = np.random.default_rng(0).integers(0, 64, size=(32, 1))
    rows = np.concatenate([starts] + [starts := successor(starts) for _ in range(16)], axis=1)
    teacher = lambda inputs: 6.0 * jax.nn.one_hot(successor(jnp.asarray(inputs)), 64)  # noqa: E731
    config = distill.student_config(LLAMA, d_model=16, n_layers=1, n_heads=2)
    student, params = _params(config)
    train = TrainConfig(steps=25, global_batch_size=8, lr=3e-2, warmup_steps=2, weight_decay=0.0, log_every=1)
    _, records = distill.train_student(student, params, rows, train, tmp_path / "student",
                                       distill.Distillation(temperature=2.0), teacher)
    losses = [record["loss"] for record in records]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_bad_distillation_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="temperature 0.0 must be > 0"):
        distill.Distillation(temperature=0.0)
    with pytest.raises(ConfigError, match=r"student's vocabulary \(32\) differs from the teacher's \(64\)"):
        distill.check_student(LLAMA, dataclasses.replace(LLAMA, vocab_size=32))


def test_cli_bad_sparsity_fails_in_one_line_before_loading(capsys):
    code = main(["compress", "prune", "--from", "/nonexistent.bin", "--sparsity", "1.0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "sparsity 1.0 must lie in [0, 1)" in err


@pytest.mark.slow
def test_cli_prune_writes_an_export_open_run_reads(data_dir, tmp_path, capsys):
    out = tmp_path / "pruned"
    code = main(["compress", "prune", "--from", str(data_dir / "stories260K" / "stories260K.bin"),
                 "--tokenizer", str(data_dir / "stories260K" / "tok512.model"), "--sparsity", "0.5",
                 "--scope", "layer", "--held-out-rows", "2", "--row-tokens", "17", "--out", str(out)])
    assert code == 0 and "layer sparsity 0.500" in capsys.readouterr().out
    opened = open_run(out)
    assert opened.tokenizer is not None and prune.sparsity_of(opened.params) == pytest.approx(0.5, abs=1e-4)


def distill_args(data_dir) -> list[str]:
    """A 1-layer student of 12K parameters, 16 steps on 8 teacher samples of 16 tokens."""
    stories = data_dir / "stories260K"
    return ["compress", "distill", "--from", str(stories / "stories260K.bin"), "--tokenizer",
            str(stories / "tok512.model"), "--held-out-rows", "2", "--row-tokens", "17", "--train-rows", "8",
            "--steps", "16", "--batch-size", "4", "--d-model", "16", "--layers", "1", "--heads", "2",
            "--log-every", "1", "--checkpoint-every", "4"]


@pytest.mark.e2e
def test_a_distill_run_killed_mid_run_resumes_to_the_uninterrupted_result(data_dir, tmp_path, capsys):
    args, full, killed = distill_args(data_dir), tmp_path / "full", tmp_path / "killed"
    assert main([*args, "--out", str(full)]) == 0
    kill_after_checkpoint(args, killed, step=4)
    capsys.readouterr()
    assert main([*args, "--out", str(killed)]) == 0
    resumed = [line for line in capsys.readouterr().err.splitlines() if "resuming from step" in line]
    assert len(resumed) == 1 and int(resumed[0].split("resuming from step ")[1].split()[0]) < 16
    records = deterministic(full)
    assert [r["step"] for r in records] == list(range(1, 17)) and "distill_loss" in records[0]
    assert_same_run(killed, full)
    assert open_run(killed).config.model.d_model == 16 and (killed / "posttrain.yaml").is_file()
    assert main([*args, "--out", str(full), "--temperature", "2"]) == 2
    err = capsys.readouterr().err
    assert "temperature=1.0" in err and "2.0" in err and err.count("\n") == 1
