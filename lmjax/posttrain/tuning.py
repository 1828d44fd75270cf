"""What a post-training run updates, as a transform of the model's parameters: `Tuning`.

The engine (`lmjax.posttrain.engine`) trains whatever tree `init` makes; the method's loss
turns it back into parameters with `model_params`, `optimizer` says which leaves train and
which are frozen, and `merged` is the model the run exports (LoRA folds its adapters in)."""

from __future__ import annotations

from typing import Any, Protocol

import optax

from lmjax.train.state import count_params


class Tuning(Protocol):
    """`init` makes the trained tree from the model's parameters (`names` its logical axes from
    theirs), `model_params` turns it back into parameters for the forward pass, `optimizer`
    wraps the base optimizer (e.g. to freeze all but adapters), `merged` is the final model."""

    def init(self, params: Any) -> Any: ...
    def names(self, param_names: Any) -> Any: ...
    def model_params(self, trained: Any) -> Any: ...
    def optimizer(self, base: optax.GradientTransformation, trained: Any) -> optax.GradientTransformation: ...
    def merged(self, trained: Any) -> Any: ...
    def trainable_count(self, trained: Any) -> int: ...


class FullTuning:
    """Every parameter trains."""

    def init(self, params: Any) -> Any:
        return params

    def names(self, param_names: Any) -> Any:
        return param_names

    def model_params(self, trained: Any) -> Any:
        return trained

    def optimizer(self, base: optax.GradientTransformation, trained: Any) -> optax.GradientTransformation:
        return base

    def merged(self, trained: Any) -> Any:
        return trained

    def trainable_count(self, trained: Any) -> int:
        return count_params(trained)
