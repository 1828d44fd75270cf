"""Training as a library: `train(config, callbacks=(), *, restart_from=None) -> RunResult`.

`setup` builds a run from a config (checks first, nothing written), `loop` runs its steps,
`callbacks` report them, `result` is what a finished run returns. See docs/training.md.
"""

from lmjax.train.callbacks import Callback, RunInfo, StopRequest, default_callbacks
from lmjax.train.loop import train
from lmjax.train.result import RunResult

__all__ = ["Callback", "RunInfo", "RunResult", "StopRequest", "default_callbacks", "train"]
