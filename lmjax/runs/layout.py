"""The run directory's layout: the one place that names every file a run writes.

Everything that reads or writes a run directory (the trainer, checkpoints, reporting,
`open_run`, exports, the sweep runner) asks a `RunLayout` for its paths instead of joining
names itself. Paths are `etils.epath.Path`, so a run directory may live on a bucket
(`gs://...`, where the Google Cloud libraries are installed) as well as on local disk.

```
<run_dir>/
  config.yaml          the resolved config (decides whether a later start may resume)
  lmjax_version        the lmjax version that wrote the run
  metrics.jsonl        one JSON record per logged step (non-finite values as null)
  restarts.jsonl       each --restart-from: the step and the settings it changed
  tensorboard/         the same scalars as TensorBoard event files
  checkpoints/<step>/  orbax checkpoints: train state and data iterator position
  checkpoints/quarantine/<step>-<time>/  unreadable checkpoints moved aside, with REASON.txt
  checkpoints/superseded/restart-<step>-<time>/  checkpoints after a --restart-from step, kept
  params/              a parameters-only checkpoint (`lmjax convert` exports)
  tokenizer/           the run's tokenizer
  loss_curve.png       train and validation loss against step
  .lock                the writer's host, pid and start time while a trainer runs
  heartbeats/process-<i>.json  each process's last step and wall time (babysit's liveness)
```

An n-gram model directory (`lmjax ngram train --out DIR`) holds `model.json` and no
`config.yaml`; `RunLayout.ngram_model` names that file, so evaluation tells the two apart.
"""

from __future__ import annotations

import dataclasses
import os

from etils import epath

PathLike = str | os.PathLike | epath.Path


@dataclasses.dataclass(frozen=True)
class RunLayout:
    root: epath.Path

    @classmethod
    def at(cls, path: PathLike) -> RunLayout:
        return cls(as_path(path))

    @property
    def config(self) -> epath.Path:
        return self.root / "config.yaml"

    @property
    def version(self) -> epath.Path:
        return self.root / "lmjax_version"

    @property
    def metrics(self) -> epath.Path:
        return self.root / "metrics.jsonl"

    @property
    def restarts(self) -> epath.Path:
        return self.root / "restarts.jsonl"

    @property
    def tensorboard(self) -> epath.Path:
        return self.root / "tensorboard"

    @property
    def checkpoints(self) -> epath.Path:
        return self.root / "checkpoints"

    @property
    def quarantine(self) -> epath.Path:
        return self.checkpoints / "quarantine"

    @property
    def superseded(self) -> epath.Path:
        return self.checkpoints / "superseded"

    @property
    def params(self) -> epath.Path:
        return self.root / "params"

    @property
    def tokenizer(self) -> epath.Path:
        return self.root / "tokenizer"

    @property
    def loss_curve(self) -> epath.Path:
        return self.root / "loss_curve.png"

    @property
    def lock(self) -> epath.Path:
        return self.root / ".lock"

    @property
    def heartbeats(self) -> epath.Path:
        return self.root / "heartbeats"

    def heartbeat(self, process_index: int) -> epath.Path:
        return self.heartbeats / f"process-{process_index}.json"

    @property
    def ngram_model(self) -> epath.Path:
        return self.root / "model.json"


def as_path(path: PathLike) -> epath.Path:
    """A local path made absolute, or a bucket/fsspec URI kept as it is."""
    resolved = epath.Path(path)
    return resolved if "://" in os.fspath(path) else epath.Path(os.path.abspath(os.fspath(path)))
