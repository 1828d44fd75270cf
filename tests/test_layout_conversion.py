"""Parameters saved in one layer layout open in the other (`model.scan_layers`): the loop
model's export restores into the scanned model with equal logits, and back."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import load_config
from lmjax.errors import CheckpointError
from lmjax.models import build_model
from lmjax.runs.open import abstract_params, example_inputs
from lmjax.runs.params import load_params, save_params


@pytest.mark.parametrize("arch_config", ["gpt_tiny", "t5_tiny"])
def test_saved_layout_converts_both_ways(tmp_path, arch_config):
    loop = load_config(arch_config).model
    scanned = dataclasses.replace(loop, scan_layers=True)
    inputs = {name: jnp.asarray(np.random.default_rng(0).integers(0, loop.vocab_size, (2, 8)))
              for name in example_inputs(loop.arch)}
    for source, target in ((loop, scanned), (scanned, loop)):
        params = nn.unbox(build_model(source).init(jax.random.key(1), **inputs)["params"])
        export = tmp_path / f"{arch_config}-{source.scan_layers}"
        save_params(export, params)
        restored = load_params(export, abstract_params(target), target)
        expected = build_model(source).apply({"params": params}, **inputs)
        got = build_model(target).apply({"params": restored}, **inputs)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_checkpoint_of_another_shape_is_refused_in_one_line(tmp_path):
    small = load_config("gpt_tiny").model
    params = nn.unbox(build_model(small).init(jax.random.key(0),
                                              input_ids=jnp.zeros((1, 4), jnp.int32))["params"])
    save_params(tmp_path / "exp", params)
    wider = dataclasses.replace(small, d_model=2 * small.d_model, scan_layers=True)
    with pytest.raises(CheckpointError, match="another model shape") as err:
        load_params(tmp_path / "exp", abstract_params(wider), wider)
    assert "\n" not in str(err.value)
