"""µP (Tensor Programs V): each parameter's init scale and Adam step against the paper's
Table 3, computed here from the fan-ins of the shapes; µP at its base width is the standard
parametrization exactly; the coordinate check is flat in width under µP only; bad settings
are refused in one line."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmjax import cli
from lmjax.config import ModelConfig, load_config
from lmjax.errors import ConfigError
from lmjax.models import build_model
from lmjax.train import mup
from lmjax.train.mup_coord import coord_check, constant_lr, width_slope
from lmjax.train.optimizer import make_optimizer

BASE, WIDE = 64, 256
LR = 1e-2


def gpt(width: int, parametrization: str = "mup", **kwargs) -> ModelConfig:
    return ModelConfig(**{"arch": "gpt", "vocab_size": 128, "d_model": width, "n_layers": 2,
                          "n_heads": 4, "d_ff": 4 * width, "max_len": 16, "dtype": "float32",
                          "tie_embeddings": False, "parametrization": parametrization,
                          "mup_base_width": BASE if parametrization == "mup" else 0, **kwargs})


def inputs(config: ModelConfig) -> dict:
    ids = jnp.asarray(np.random.default_rng(1).integers(0, config.vocab_size, (4, 16)), jnp.int32)
    if config.arch == "t5":
        return {"input_ids": ids, "decoder_input_ids": ids[:, ::-1]}
    return {"input_ids": ids}


def init_and_first_step(config: ModelConfig, seed: int = 0):
    """Parameters after init, after one Adam step (constant lr, no decay or clipping), and the
    effective output multiplier: logits / (final hidden · W_out), measured, not read."""
    model = build_model(config)
    example = inputs(config)
    params = nn.unbox(mup.scale_init(model.init(jax.random.key(seed), **example)["params"], config))
    # eps far below every gradient, so Adam's first step is ±lr·multiplier on every entry.
    train = dataclasses.replace(constant_lr(LR, 10), eps=1e-20)
    optimizer = make_optimizer(train, mup.lr_scaling(model, example))

    def loss(p):
        return jnp.mean(jnp.square(model.apply({"params": p}, **example)))

    updates, _ = optimizer.update(jax.grad(loss)(params), optimizer.init(params), params)
    return model, params, optax.apply_updates(params, updates), example


def readout_multiplier(model, params, example) -> float:
    logits, state = model.apply({"params": params}, **example, capture_intermediates=True,
                                mutable=["intermediates"])
    hidden = state["intermediates"]["ln_f"]["__call__"][0]
    plain = jnp.einsum("btd,dv->btv", hidden, params["lm_head"]["kernel"])
    return float(jnp.sum(logits * plain) / jnp.sum(plain * plain))


# Table 3 of Tensor Programs V (Adam), as exponents of fan_in (fan_out for input weights):
# init variance ∝ fan_in^var, Adam lr ∝ fan_in^lr. Input weights and biases: 0, 0; hidden
# weights: -1, -1; output weights: -2, -1 (of the effective weight, multiplier included).
TABLE3 = {"input": (0, 0), "hidden": (-1, -1), "output": (-2, -1)}
# Which entry of Table 3 each GPT kernel is, from its place in the network (not its axes);
# every fan-in (d or 4·d) grows by WIDE / BASE.
GPT_KERNELS = {
    ("wte", "embedding"): "input", ("wpe", "embedding"): "input",
    ("attn", "query", "kernel"): "hidden", ("attn", "key", "kernel"): "hidden",
    ("attn", "value", "kernel"): "hidden", ("attn", "out", "kernel"): "hidden",
    ("mlp", "wi", "kernel"): "hidden", ("mlp", "wo", "kernel"): "hidden",
    ("lm_head", "kernel"): "output",
}


def table3_role(path: tuple[str, ...]) -> str:
    for suffix, role in GPT_KERNELS.items():
        if path[-len(suffix):] == suffix:
            return role
    return "input"  # biases and norm scales


def leaves(tree) -> dict[tuple[str, ...], np.ndarray]:
    return {tuple(k.key for k in path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_init_scale_and_first_adam_step_follow_table3_for_every_gpt_parameter():
    measured = {}
    for width in (BASE, WIDE):
        model, before, after, example = init_and_first_step(gpt(width))
        out = readout_multiplier(model, before, example)
        measured[width] = {path: (value, leaves(after)[path], out if "lm_head" in path else 1.0)
                           for path, value in leaves(before).items()}
    ratio = WIDE / BASE
    for path, (base_init, base_after, base_mult) in measured[BASE].items():
        wide_init, wide_after, wide_mult = measured[WIDE][path]
        var_exp, lr_exp = TABLE3[table3_role(path)]
        if np.std(base_init) > 0:  # zero-initialised biases have no scale to compare
            std_ratio = np.std(wide_init * wide_mult) / np.std(base_init * base_mult)
            assert std_ratio == pytest.approx(ratio ** (var_exp / 2), rel=0.06), path
        if path[-2:] == ("key", "bias"):
            continue  # softmax ignores a key bias (q·b shifts a whole row): its gradient is 0
        step_ratio = (np.abs(wide_after - wide_init).max() * wide_mult
                      / (np.abs(base_after - base_init).max() * base_mult))
        assert step_ratio == pytest.approx(ratio**lr_exp, rel=1e-4), path


def test_attention_scores_scale_as_one_over_head_size():
    """Table 3's attention logit: q·k/d_head under µP (equal to 1/sqrt(d_head) at the base
    width), q·k/sqrt(d_head) under the standard parametrization."""
    from lmjax.models.layers import mup_attention_scale

    base_d_head = BASE // 4
    for width in (BASE, 128, WIDE, 1024):
        d_head = width // 4
        assert mup_attention_scale(gpt(width), None) == pytest.approx(base_d_head**0.5 / d_head)
        assert mup_attention_scale(gpt(width, "standard"), None) is None
        t5 = ModelConfig(arch="t5", d_model=width, n_heads=4, position="relative",
                         parametrization="mup", mup_base_width=BASE)
        assert mup_attention_scale(t5, 1.0) == pytest.approx((base_d_head / d_head) ** 0.5)


def t5_config(width: int, parametrization: str) -> ModelConfig:
    return ModelConfig(arch="t5", vocab_size=128, d_model=width, n_layers=1, n_heads=4,
                       d_ff=2 * width, max_len=16, norm="rmsnorm", position="relative",
                       mlp="relu", use_bias=False, dtype="float32", tie_embeddings=False,
                       parametrization=parametrization,
                       mup_base_width=width if parametrization == "mup" else 0)


def bert_config(width: int, parametrization: str) -> ModelConfig:
    return ModelConfig(arch="bert", vocab_size=128, d_model=width, n_layers=1, n_heads=4,
                       d_ff=2 * width, max_len=16, dtype="float32", nsp=False,
                       parametrization=parametrization,
                       mup_base_width=width if parametrization == "mup" else 0)


@pytest.mark.parametrize("make", [
    lambda p: gpt(BASE, p), lambda p: bert_config(32, p), lambda p: t5_config(32, p),
    lambda p: gpt(BASE, p, tie_embeddings=True, scan_layers=True),
], ids=["gpt", "bert", "t5", "gpt_tied_scanned"])
def test_mup_at_its_base_width_is_the_standard_parametrization_exactly(make):
    _, mup_init, mup_after, _ = init_and_first_step(make("mup"))
    _, std_init, std_after, _ = init_and_first_step(make("standard"))
    for tree_mup, tree_std in ((mup_init, std_init), (mup_after, std_after)):
        for (path, a), (_, b) in zip(leaves(tree_mup).items(), leaves(tree_std).items()):
            assert np.array_equal(a, b), path


def test_the_trainer_initialises_and_steps_with_mups_multipliers(tmp_path):
    """Through `build_setup` and `init_state`: same seed, so the same draws; a hidden kernel
    is the standard one times (64/32)^-1/2 and its first Adam step half the embedding's."""
    from lmjax.train.setup import build_setup
    from lmjax.train.state import init_state

    states = {}
    for overrides in ([], ["model.parametrization=mup", "model.mup_base_width=32"]):
        config = load_config("gpt_tiny", [f"run_dir={tmp_path / str(len(overrides))}",
                                          "train.warmup_steps=0", "train.grad_clip=0",
                                          "train.weight_decay=0", *overrides])
        setup = build_setup(config)
        state = init_state(setup.model, setup.optimizer, setup.example, jax.random.key(0),
                           setup.shardings, setup.mesh, setup.rules)
        ones = jax.tree.map(jnp.ones_like, state["params"])
        updates, _ = setup.optimizer.update(ones, state["opt_state"], state["params"])
        states[len(overrides)] = (leaves(state["params"]), leaves(updates))
    (std_params, std_updates), (mup_params, mup_updates) = states[0], states[2]
    wi = ("h_0", "mlp", "wi", "kernel")
    np.testing.assert_allclose(mup_params[wi], std_params[wi] * 2**-0.5, rtol=1e-6)
    wte = ("wte", "embedding")
    np.testing.assert_array_equal(mup_params[wte], std_params[wte])
    assert mup_updates[wi].max() == pytest.approx(0.5 * std_updates[wi].max(), rel=1e-6)
    assert mup_updates[wte].max() == pytest.approx(std_updates[wte].max(), rel=1e-6)


@pytest.mark.e2e
def test_coordinate_check_is_flat_in_width_under_mup_and_grows_under_standard():
    widths = [32, 64, 128, 256]
    slopes = {}
    for parametrization in ("standard", "mup"):
        scales = coord_check(parametrization, widths, base_width=32, lr=1e-2, steps=3,
                             batch=4, seq_len=16)
        for key in ("block_0", "block_1", "logits"):
            slopes[parametrization, key] = width_slope(widths, [scales[w][-1][key] for w in widths])
    for key in ("block_0", "block_1", "logits"):
        assert abs(slopes["mup", key]) < 0.3, slopes
        assert slopes["standard", key] > 0.7, slopes


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.parametrization=mu"], "model.parametrization='mu' is not one of standard, mup"),
    (["model.parametrization=mup"], "model.parametrization=mup needs model.mup_base_width > 0"),
    (["model.parametrization=mup", "model.mup_base_width=-32"], "needs model.mup_base_width > 0"),
    (["model.parametrization=mup", "model.mup_base_width=30"],
     "model.mup_base_width=30 is not a multiple of model.n_heads=4"),
    (["model.mup_base_width=32"],
     "model.mup_base_width=32 is set but model.parametrization=standard"),
    (["model.parametrization=mup", "model.mup_base_width=32", "model.head_dim=8"],
     "needs the head size to grow with d_model"),
])
def test_bad_mup_settings_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config("gpt_tiny", overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_check_refuses_mup_without_a_base_width(tmp_path, capsys):
    argv = ["train", "--config", "gpt_tiny", f"run_dir={tmp_path / 'run'}",
            "model.parametrization=mup", "--check"]
    assert cli.main(argv) == 2
    assert "set it to the d_model whose lr you tuned" in capsys.readouterr().err
