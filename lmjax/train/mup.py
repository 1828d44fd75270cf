"""µP, the Maximal Update Parametrization (Yang et al. 2022, "Tensor Programs V", Table 3),
for Adam: what it changes in initialisation and learning rates, per kind of parameter.

µP is written relative to a base width (`model.mup_base_width`), with m = d_model / base:
at m = 1 it is the standard parametrization exactly, and as the model widens the optimal
learning rate and the activations' scale stay put, so an lr tuned at the base width transfers.
The form is that of Microsoft's `mup` package (MuReadout, MuAdam):

| kind      | what (logical axes)                             | init std | Adam lr | forward |
|-----------|--------------------------------------------------|----------|---------|---------|
| hidden    | two dimensions that grow with width (embed×mlp,  | × m^-1/2 | × 1/m   |         |
|           | embed×heads×kv, heads×kv×embed, mlp×embed)        |          |         |         |
| embedding | fixed × growing (vocab×embed, length×embed)      | × 1      | × 1     |         |
| output    | growing × fixed (embed×vocab, mlp×classes)       | × 1      | × 1     | × 1/m   |
| vector    | biases and norm scales                            | × 1      | × 1     |         |
| fixed     | nothing grows (T5's relative-position table)     | × 1      | × 1     |         |

The output's forward multiplier 1/m (also a tied embedding's, when it is the output layer)
and the attention scale 1/d_head live in the models (`ModelConfig.logit_multiplier`,
`attention_multiplier`); this module does the rest: `scale_init` on freshly initialised
(logically named) parameters, and `lr_scaling`, an optax transform that multiplies each
parameter's Adam direction by its lr multiplier, before weight decay: MuAdamW divides a hidden
matrix's lr by m and multiplies its weight decay by m, so lr·weight_decay stays as it was.
A parameter's kind comes from its logical axis names (`lmjax.models.layers`), not module names.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import optax

from lmjax.config import ModelConfig

# Logical axes whose size grows with d_model (heads stay fixed, so the head size grows).
GROWING_AXES = frozenset({"embed", "mlp", "kv"})
STACKED_AXES = frozenset({"layers"})  # model.scan_layers' leading dimension
VECTOR_NAMES = ("bias", "scale")


def param_kind(name: str, axes: tuple[str | None, ...]) -> str:
    """hidden, embedding, output, vector or fixed (table above) of the parameter `name`
    whose dimensions carry the logical `axes`."""
    axes = tuple(axis for axis in axes if axis not in STACKED_AXES)
    growing = [axis in GROWING_AXES for axis in axes]
    if sum(growing) >= 2:
        return "hidden"
    if name in VECTOR_NAMES or len(axes) == 1:
        return "vector"
    if not any(growing):
        return "fixed"
    return "output" if growing[0] else "embedding"


def init_multiplier(kind: str, width_multiplier: float) -> float:
    """Factor on a parameter's standard init std: hidden matrices get var ∝ 1/fan_in."""
    return width_multiplier**-0.5 if kind == "hidden" else 1.0


def lr_multiplier(kind: str, width_multiplier: float) -> float:
    """Factor on a parameter's Adam learning rate: hidden matrices get lr ∝ 1/fan_in."""
    return 1.0 / width_multiplier if kind == "hidden" else 1.0


def _is_boxed(leaf: Any) -> bool:
    return isinstance(leaf, nn.Partitioned)


def _leaf_name(path: tuple) -> str:
    return str(getattr(path[-1], "key", path[-1]))


def param_kinds(boxed_params: Any) -> Any:
    """The kind of each parameter of a tree of boxed (logically named) parameters, as a tree
    of strings shaped like the unboxed parameters."""
    return jax.tree_util.tree_map_with_path(
        lambda path, box: param_kind(_leaf_name(path), tuple(box.names)),
        boxed_params, is_leaf=_is_boxed,
    )


def scale_init(boxed_params: Any, model: ModelConfig) -> Any:
    """Freshly initialised boxed parameters with µP's init multipliers applied (unchanged
    under the standard parametrization)."""
    if model.parametrization != "mup":
        return boxed_params
    m = model.width_multiplier

    def scale(path, box):
        kind = param_kind(_leaf_name(path), tuple(box.names))
        return box.replace_boxed(box.unbox() * init_multiplier(kind, m))

    return jax.tree_util.tree_map_with_path(scale, boxed_params, is_leaf=_is_boxed)


def scale_updates(multipliers: Any) -> optax.GradientTransformation:
    """Multiplies each update by its parameter's (static) multiplier."""

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, k: u * k, updates, multipliers), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def lr_scaling(model: nn.Module, example: dict) -> optax.GradientTransformation | None:
    """The optax transform that applies µP's per-parameter lr multipliers to the optimizer's
    updates, or None under the standard parametrization. The parameters' kinds come from an
    abstract init (shapes and logical names only; nothing is computed)."""
    config: ModelConfig = model.config
    if config.parametrization != "mup":
        return None
    boxed = jax.eval_shape(model.init, jax.random.key(0), **example)["params"]
    m = config.width_multiplier
    multipliers = jax.tree.map(lambda kind: lr_multiplier(kind, m), param_kinds(boxed))
    return scale_updates(multipliers)
