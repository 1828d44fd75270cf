"""lmjax's µP against Microsoft's `mup` package (github:microsoft/mup) on one small model:
an embedding, a hidden MLP and a MuReadout, at base width 32 and width 128. Given the same
parameters and gradients, one step of `mup.MuAdamW` and one of lmjax's AdamW with
`lmjax.train.mup`'s multipliers move every parameter the same, and the readout multiplier and
init scales agree. Skipped where `mup` is not installed (it is not a dependency of lmjax):
    pip install --no-deps --target /tmp/mup_pkg mup
    PYTHONPATH=$PWD:/tmp/mup_pkg python -m pytest tests/test_mup_package.py
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import ModelConfig
from lmjax.train import mup as lmjax_mup
from lmjax.train.mup_coord import constant_lr
from lmjax.train.optimizer import make_optimizer

torch = pytest.importorskip("torch")
mup = pytest.importorskip("mup")

VOCAB, BASE, WIDTH, LR, DECAY = 50, 32, 128, 1e-2, 0.1


class Net(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, width)
        self.wi = torch.nn.Linear(width, 4 * width)
        self.wo = torch.nn.Linear(4 * width, width)
        self.readout = mup.MuReadout(width, VOCAB)

    def forward(self, ids):
        x = self.embed(ids)
        return self.readout(x + self.wo(torch.relu(self.wi(x))))


# Each torch parameter as lmjax names it: (name, logical axes), and how to lay it out
# (torch's Linear weight is out×in, lmjax's kernel in×out).
LMJAX_NAMES = {
    "embed.weight": ("embedding", ("vocab", "embed"), False),
    "wi.weight": ("kernel", ("embed", "mlp"), True), "wi.bias": ("bias", ("mlp",), False),
    "wo.weight": ("kernel", ("mlp", "embed"), True), "wo.bias": ("bias", ("embed",), False),
    "readout.weight": ("kernel", ("embed", "vocab"), True),
    "readout.bias": ("bias", ("vocab",), False),
}


def mup_net(width: int) -> Net:
    torch.manual_seed(0)
    net = Net(width)
    mup.set_base_shapes(net, Net(BASE), delta=Net(2 * BASE))
    return net


def as_lmjax(name: str, tensor) -> np.ndarray:
    value = tensor.detach().numpy().astype(np.float32)
    return value.T if LMJAX_NAMES[name][2] else value


def torch_step(net: Net, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One MuAdamW step; weight decay on matrices only, as lmjax's `decay_mask`."""
    params = dict(net.named_parameters())
    groups = [{"params": [p for n, p in params.items() if p.ndim >= 2], "weight_decay": DECAY},
              {"params": [p for n, p in params.items() if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = mup.MuAdamW(groups, lr=LR, betas=(0.9, 0.95), eps=1e-8)
    before = {n: as_lmjax(n, p) for n, p in params.items()}
    for name, p in params.items():
        p.grad = torch.tensor(grads[name].T if LMJAX_NAMES[name][2] else grads[name])
    optimizer.step()
    return {n: as_lmjax(n, p) - before[n] for n, p in params.items()}


def lmjax_step(params: dict, grads: dict, width: int) -> dict[str, np.ndarray]:
    config = ModelConfig(d_model=width, n_heads=4, parametrization="mup", mup_base_width=BASE)
    multipliers = {name: lmjax_mup.lr_multiplier(
        lmjax_mup.param_kind(LMJAX_NAMES[name][0], LMJAX_NAMES[name][1]), config.width_multiplier)
        for name in params}
    train = dataclasses.replace(constant_lr(LR, 10), weight_decay=DECAY, b2=0.95, eps=1e-8)
    optimizer = make_optimizer(train, lmjax_mup.scale_updates(multipliers))
    jparams = {n: jnp.asarray(v) for n, v in params.items()}
    updates, _ = optimizer.update({n: jnp.asarray(g) for n, g in grads.items()},
                                  optimizer.init(jparams), jparams)
    return {n: np.asarray(u) for n, u in updates.items()}


def test_first_adamw_step_matches_mups_muadamw_parameter_by_parameter():
    net = mup_net(WIDTH)
    params = {n: as_lmjax(n, p) for n, p in net.named_parameters()}
    rng = np.random.default_rng(0)
    grads = {n: rng.normal(size=v.shape).astype(np.float32) for n, v in params.items()}
    ours = lmjax_step(params, grads, WIDTH)
    theirs = torch_step(net, grads)
    for name in params:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-4, atol=1e-8, err_msg=name)
    # Table 3, recomputed: a hidden matrix's Adam lr is lr·base/fan_in, the rest keep lr.
    assert np.abs(theirs["wi.weight"] + LR * DECAY * params["wi.weight"]).max() == pytest.approx(
        LR * BASE / WIDTH, rel=1e-3)


def test_readout_multiplier_and_init_scales_match_mup():
    config = ModelConfig(d_model=WIDTH, n_heads=4, parametrization="mup", mup_base_width=BASE)
    net = mup_net(WIDTH)
    readout = net.readout
    assert config.logit_multiplier == pytest.approx(readout.output_mult / readout.width_mult())
    assert config.logit_multiplier == pytest.approx(BASE / WIDTH)
    # The init std's change from base to this width, per parameter: mup rescales the readout
    # by sqrt(m) and leaves PyTorch's 1/fan_in init elsewhere; lmjax multiplies its own.
    base = mup_net(BASE)
    m = config.width_multiplier
    for name, _ in net.named_parameters():
        if name.endswith("bias"):
            continue
        theirs = (dict(net.named_parameters())[name].detach().std()
                  / dict(base.named_parameters())[name].detach().std())
        kind = lmjax_mup.param_kind(LMJAX_NAMES[name][0], LMJAX_NAMES[name][1])
        ours = lmjax_mup.init_multiplier(kind, m) / lmjax_mup.init_multiplier(kind, 1.0)
        assert float(theirs) == pytest.approx(ours, rel=0.1), name
