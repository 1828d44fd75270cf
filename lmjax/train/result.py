"""What a finished (or preempted) training run reports: `RunResult`, plain JSON-able data."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass
class RunResult:
    """The outcome of `lmjax.train.train`: what a sweep compares runs by.

    Losses are in nats per loss-carrying token; `eval_bits_per_byte` divides the evaluated
    tokens' total loss by ln 2 and by the UTF-8 bytes those tokens decode to. `tokens_seen`
    counts tokens that carried loss (BERT: the ~15% it predicts), `input_tokens_seen` the
    positions fed to the model; both are totals since the run's first step, resumes included.
    `train_flops` is the model FLOPs of every step this run's directory has trained.
    """

    run_dir: str
    steps: int
    start_step: int
    train_loss: float | None
    eval_loss: float | None
    eval_bits_per_byte: float | None
    parameters: int
    embedding_parameters: int
    non_embedding_parameters: int
    tokens_seen: int
    input_tokens_seen: int
    train_flops: float
    wall_time: float
    preempted: bool
    skipped_batches: int
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for json.dumps: non-finite floats become None, records included."""
        return _json_safe(dataclasses.asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
