"""A sweep point's identity: a readable name from its varied values and a short hash of the
resolved config fields that change results.

Re-running a sweep file finds the same run directories (`<readable>-<hash>`); editing one
value gives new points beside the old ones, as Marin's executor does with its version hashes.
Fields that cannot change what is trained or measured are left out of the hash: names and
paths, logging, evaluation and checkpoint intervals, the measured-peak setting, data loader
workers and the mesh (its shape changes how the work is spread, not the model or the data;
the trainer likewise lets a run resume on another mesh). Fields at their default are left
out too, so a key added to lmjax later (whose default keeps the old behaviour, as
`lmjax.runs.config_file` assumes) does not rename every existing point; the price is that a
changed default in lmjax does not rename points either.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any

from lmjax import config as config_lib
from lmjax.config import Config
from lmjax.sweep.dotted_keys import flatten

HASH_LENGTH = 8
EXCLUDED = (
    "name", "run_dir",
    "train.log_every", "train.eval_every", "train.peak_flops",
    "checkpoint.every", "checkpoint.keep", "checkpoint.keep_steps",
    "data.data_dir", "data.cache_dir", "data.download", "data.worker_count",
    "mesh.data", "mesh.fsdp", "mesh.tensor", "mesh.axis_rules",
    "mesh.coordinator_address", "mesh.num_processes", "mesh.process_id",
)
UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


def identity_fields(config: Config) -> dict[str, Any]:
    """The flattened config keys that decide a point's results and differ from the defaults."""
    flat, defaults = flatten(config_lib.to_dict(config)), _defaults()
    return {key: value for key, value in sorted(flat.items())
            if key not in EXCLUDED and (key not in defaults or defaults[key] != value)}


@functools.cache
def _defaults() -> dict[str, Any]:
    return flatten(config_lib.to_dict(Config()))


def config_hash(config: Config, branch: dict[str, Any] | None = None) -> str:
    """The first 8 hex digits of SHA-256 over the identity fields as canonical JSON; a
    cooldown branch's also over its parent (name and hash) and step."""
    fields = identity_fields(config) if branch is None else {**identity_fields(config), "branch": branch}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def readable_name(values: dict[str, Any]) -> str:
    """`d_model=256,n_layers=4`: each varied key by its last part (whole if that part is
    ambiguous), values as written; characters unsafe in a path become '_'."""
    short = {key: key.rsplit(".", 1)[-1] for key in values}
    counts: dict[str, int] = {}
    for name in short.values():
        counts[name] = counts.get(name, 0) + 1
    parts = [f"{short[key] if counts[short[key]] == 1 else key}={format_value(value)}"
             for key, value in values.items()]
    return UNSAFE.sub("_", ",".join(parts))


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
