"""IsoFLOP sweeps generated from budgets (issue 22, item 3): steps = C / (6·N·tokens per
step) against step counts computed here by hand from the GPT parameter count, the sizes
nearest the expected optimum per budget, and points above max_epochs refused in one line."""

import math
import textwrap

import jax
import pytest

from lmjax import cli
from lmjax.errors import ConfigError
from lmjax.sweep import load_spec, points

# gpt_tiny: vocabulary 256, 64 learned positions, tied embeddings, biases, layernorm;
# batch 8 × sequence 32 = 256 tokens per step.
SWEEP = """
    base: gpt_tiny
    overrides: {{train.warmup_steps: 1, checkpoint.every: 1000}}
    isoflop:
      budgets: [1.0e9, 1.0e10]
      sizes:
        model.d_model: [32, 64, 128]
        model.n_layers: [1, 2, 2]
        model.n_heads: [2, 4, 4]
        model.d_ff: [128, 256, 512]
      tokens_per_step: 256
{extra}
"""


def gpt_parameters(d, layers, ff, vocab=256, positions=64):
    """Embeddings (tied head), per layer attention 4d²+4d, MLP 2·d·ff+ff+d, two layernorms
    4d, and the final layernorm 2d."""
    per_layer = 4 * d * d + 4 * d + 2 * d * ff + ff + d + 4 * d
    return (vocab + positions) * d + layers * per_layer + 2 * d


def sweep(tmp_path, extra=""):
    file = tmp_path / "iso.yaml"
    file.write_text(textwrap.dedent(SWEEP).format(extra=textwrap.indent(extra, "      ")))
    return load_spec(file, output_dir=str(tmp_path / "out"))


def test_the_hand_count_of_parameters():
    assert [gpt_parameters(32, 1, 128), gpt_parameters(64, 2, 256), gpt_parameters(128, 2, 512)] == \
        [23008, 120576, 437760]


def test_every_size_at_every_budget_with_steps_from_the_budget(tmp_path):
    found = points(sweep(tmp_path, "data_tokens: 1.0e7"))
    # 1e9 / (6 · 23008 · 256) = 28.30 -> 28, 1e9 / (6 · 120576 · 256) = 5.40 -> 5,
    # 1e9 / (6 · 437760 · 256) = 1.49 -> 1, and at 1e10: 282.96 -> 283, 53.99 -> 54, 14.87 -> 15
    assert [(p.variables["budget"], p.config.model.d_model, p.config.train.steps) for p in found] == [
        (1e9, 32, 28), (1e9, 64, 5), (1e9, 128, 1), (1e10, 32, 283), (1e10, 64, 54), (1e10, 128, 15)]
    assert found[0].name == "budget=1e+09,d_model=32,n_layers=1,n_heads=2,d_ff=128"
    for point in found:  # C = 6·N·D of each point is its budget, to the rounding of its steps
        n = gpt_parameters(point.config.model.d_model, point.config.model.n_layers, point.config.model.d_ff)
        budget = point.variables["budget"]
        assert abs(6 * n * 256 * point.config.train.steps - budget) <= 6 * n * 256 / 2


def test_per_budget_takes_the_sizes_nearest_the_expected_optimum(tmp_path):
    # N* = sqrt(C / (6 · 0.05)): 57.7k at 1e9 (nearest in log N: 120k, then 23k) and
    # 183k at 1e10 (120k, then 438k)
    found = points(sweep(tmp_path, "per_budget: 2\ntokens_per_parameter: 0.05\ndata_tokens: 1.0e7"))
    assert math.isclose(math.sqrt(1e9 / 0.3), 57735.03, rel_tol=1e-6)
    assert [(p.variables["budget"], p.config.model.d_model) for p in found] == [
        (1e9, 32), (1e9, 64), (1e10, 64), (1e10, 128)]


def test_points_above_max_epochs_are_refused_naming_the_point(tmp_path):
    # 283 steps × 256 tokens = 72,448 tokens over 10,000: 7.24 epochs
    with pytest.raises(ConfigError, match=r"point budget=1e\+10,d_model=32,n_layers=1,n_heads=2,d_ff=128 "
                                          r"sees its data 7.24 times .* above isoflop.max_epochs=4") as err:
        points(sweep(tmp_path, "data_tokens: 10000"))
    assert "\n" not in str(err.value)
    points(sweep(tmp_path, "data_tokens: 10000\nmax_epochs: 8"))  # allowed when asked for


@pytest.mark.parametrize("extra, message", [
    ("tokens_per_step: 512", "isoflop.tokens_per_step=512 but train.global_batch_size × data.seq_len = 256"),
    ("per_budget: 0", "isoflop.per_budget=0 must be a positive number"),
    ("epochs: 3", "isoflop: unknown key 'epochs'"),
])
def test_bad_isoflop_blocks_are_one_line_errors(tmp_path, extra, message):
    text = extra if not extra.startswith("tokens_per_step") else ""
    spec_text = SWEEP.replace("tokens_per_step: 256", extra) if extra.startswith("tokens_per_step") else SWEEP
    file = tmp_path / "bad.yaml"
    file.write_text(textwrap.dedent(spec_text).format(extra=textwrap.indent(text, "      ")))
    with pytest.raises(ConfigError, match=message) as err:
        points(load_spec(file))
    assert "\n" not in str(err.value)


def test_a_budget_below_one_step_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="budget 1e\\+08 FLOP is less than one step of this size"):
        points(sweep(tmp_path).__class__(**{**sweep(tmp_path).__dict__,
                                            "isoflop": {**sweep(tmp_path).isoflop, "budgets": [1e8]}}))


def test_the_dry_run_shows_each_points_steps_and_epochs(tmp_path, capsys):
    spec = sweep(tmp_path, "data_tokens: 1.0e5")
    assert cli.main(["sweep", "run", spec.path, "--output-dir", spec.output_dir, "--dry-run", "--no-calibrate"]) == 0
    out = capsys.readouterr().out
    assert f"6 points valid for {jax.device_count()} devices; up to 0.72 epochs of the data" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    # 283 steps × 256 / 1e5 = 0.72 epochs; 1 step × 256 / 1e5 = 0.00
    assert rows["budget=1e+10,d_model=32,n_layers=1,n_heads=2,d_ff=128"][-3:-1] == ["283", "0.72"]
    assert rows["budget=1e+09,d_model=128,n_layers=2,n_heads=4,d_ff=512"][-3:-1] == ["1", "0.00"]
