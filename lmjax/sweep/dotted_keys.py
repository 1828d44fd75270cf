"""Nested config mappings as flat dotted keys (`{"train": {"steps": 1}}` -> `train.steps`).

Sweep files, expressions and point hashes all speak in dotted keys; this module is the one
place that turns `lmjax.config.to_dict` output into them, so that `spec` and `identity`
both import it rather than each other.
"""

from __future__ import annotations

from typing import Any


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of the nested mapping under its dotted key."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
