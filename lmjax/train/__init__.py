"""Training as a library: `train(config, callbacks=(), *, restart_from=None) -> RunResult`.

`setup` builds a run from a config (checks first, nothing written), `loop` runs its steps,
`callbacks` report them, `result` is what a finished run returns. See docs/training.md.

Names are imported on first use, so the step and the optimizer (`lmjax.train.step`,
`lmjax.train.optimizer`) load without the data pipeline's grain and tfds, as on a GPU machine
that trains on synthetic batches (experiments/gpu_bench.py).
"""

import importlib

_EXPORTS = {
    "Callback": "lmjax.train.callbacks",
    "RunInfo": "lmjax.train.callbacks",
    "StopRequest": "lmjax.train.callbacks",
    "default_callbacks": "lmjax.train.callbacks",
    "train": "lmjax.train.loop",
    "RunResult": "lmjax.train.result",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lmjax.train' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
