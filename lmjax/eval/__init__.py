"""Evaluation through EleutherAI's lm-evaluation-harness (docs/evaluation.md).

`loglikelihood` and `evaluate` are the Python API; `LmjaxLM` is the harness model class
(registered as `lmjax`); it needs `lm_eval` (`pip install lmjax[eval]`), imported on first use.
"""

from __future__ import annotations

from typing import Any

from lmjax.eval.api import evaluate, loglikelihood


def __getattr__(name: str) -> Any:
    if name in ("LmjaxLM", "Unsupported"):
        from lmjax.eval import harness

        return getattr(harness, name)
    raise AttributeError(f"module 'lmjax.eval' has no attribute {name!r}")


__all__ = ["LmjaxLM", "evaluate", "loglikelihood"]
