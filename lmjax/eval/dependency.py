"""The harness is an optional dependency: a missing one is a one-line error with the fix."""

from __future__ import annotations

import importlib.util

from lmjax.errors import ConfigError


def require_harness() -> None:
    """Raise before anything loads when lm-evaluation-harness is not installed."""
    if importlib.util.find_spec("lm_eval") is None:
        raise ConfigError("evaluation needs EleutherAI's lm-evaluation-harness: pip install lmjax[eval]")


def harness_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
