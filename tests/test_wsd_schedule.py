"""train.schedule=wsd against Hägele et al. (2024)'s warmup-stable-decay, written out here
from the paper: linear warm-up, a constant rate, then a cooldown over the last share of the
steps shaped 1 − x (linear) or 1 − √x (1-sqrt), x the fraction of the cooldown done."""

import math

import numpy as np
import pytest

from lmjax.config import Config, TrainConfig, validate
from lmjax.errors import ConfigError
from lmjax.train.optimizer import learning_rate_schedule


def paper_wsd(t, peak, warmup, total, cooldown_steps, shape, floor=0.0):
    if t < warmup:
        return peak * t / warmup
    cooldown_from = total - cooldown_steps
    if t < cooldown_from:
        return peak
    x = (t - cooldown_from) / cooldown_steps
    factor = 1 - x if shape == "linear" else 1 - math.sqrt(x)
    return floor + (peak - floor) * factor


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_follows_the_papers_formula(shape):
    train = TrainConfig(schedule="wsd", lr=3e-3, warmup_steps=10, steps=100, decay_fraction=0.2,
                        decay_shape=shape, min_lr_ratio=0.0)
    schedule = learning_rate_schedule(train)
    got = np.array([float(schedule(t)) for t in range(101)])
    want = np.array([paper_wsd(t, 3e-3, 10, 100, 20, shape) for t in range(101)])
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-12)
    # hand-checked values: the plateau, the cooldown's middle and its end
    assert got[50] == pytest.approx(3e-3)
    assert got[90] == pytest.approx(3e-3 * (0.5 if shape == "linear" else 1 - math.sqrt(0.5)))
    assert got[100] == pytest.approx(0.0, abs=1e-12)


def test_wsd_decays_to_the_floor_and_the_stable_phase_does_not_depend_on_steps():
    short = TrainConfig(schedule="wsd", lr=1e-3, warmup_steps=5, steps=50, decay_fraction=0.2,
                        min_lr_ratio=0.1, decay_shape="linear")
    long = TrainConfig(**{**short.__dict__, "steps": 200})
    a, b = learning_rate_schedule(short), learning_rate_schedule(long)
    assert [float(a(t)) for t in range(40)] == [float(b(t)) for t in range(40)]
    assert float(a(50)) == pytest.approx(1e-4)
    assert float(a(45)) == pytest.approx(1e-4 + 0.9e-3 * 0.5)


def test_cosine_stays_the_default():
    schedule = learning_rate_schedule(TrainConfig(lr=1.0, warmup_steps=0, steps=100, min_lr_ratio=0.0))
    assert float(schedule(50)) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)), abs=1e-6)


@pytest.mark.parametrize("values, message", [
    ({"schedule": "step"}, "train.schedule='step': choose cosine or wsd"),
    ({"schedule": "wsd", "decay_shape": "cosine"}, "train.decay_shape='cosine'"),
    ({"schedule": "wsd", "decay_fraction": 0.0}, "train.decay_fraction=0.0 must lie in (0, 1]"),
    ({"schedule": "wsd", "decay_fraction": 0.95, "warmup_steps": 10, "steps": 100},
     "train.warmup_steps=10 runs into the decay"),
])
def test_bad_schedule_settings_are_one_line_errors(values, message):
    config = Config(name="x", train=TrainConfig(**values))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate(config)
