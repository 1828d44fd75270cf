"""Training objectives: batch -> model inputs, targets and loss; chosen by `data.objective`."""

from __future__ import annotations

from lmjax.errors import ConfigError
from lmjax.objectives.base import Objective
from lmjax.objectives.causal_lm import CausalLM


def make_objective(name: str, *, pad_id: int = -1, vocab_size: int = 0, **options) -> Objective:
    """The objective named by the config; `vocab_size` and special ids come from the tokenizer."""
    del vocab_size, options
    if name == "causal_lm":
        return CausalLM(pad_id=pad_id)
    raise ConfigError(f"objective {name!r} is not available: use causal_lm")


__all__ = ["CausalLM", "Objective", "make_objective"]
