"""A run directory on a bucket: train, stop, resume and open a `gs://` run with no network.

The bucket is fake-gcs-server (Google's JSON API, in memory) on 127.0.0.1, started by the
test and stopped at its end. Every layer really talks to it over HTTP: epath (gcsfs) writes
config.yaml, metrics.jsonl, the tokenizer and the lock; orbax commits checkpoints the GCS way
(commit_success.txt, no rename); TensorStore's `gcs` kvstore writes and reads the arrays.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from fake_gcs import bucket  # noqa: F401  (the fixture)

from lmjax.config import load_config
from lmjax.runs import open_run
from lmjax.runs.layout import RunLayout
from lmjax.train import Callback, StopRequest, train
from lmjax.train.reporting import read_metrics

RUN = ["train.steps=6", "checkpoint.every=2", "train.log_every=1", "train.eval_every=1000"]


class StopAfterStep(Callback):
    def __init__(self, stop: StopRequest, step: int):
        self.stop, self.step = stop, step

    def on_log(self, step, record):
        if step >= self.step:
            self.stop.request()


@pytest.mark.e2e  # a slow end-to-end check: .ci/run's second step
def test_a_gs_run_dir_trains_resumes_and_opens_like_a_local_one(bucket, tmp_path):
    remote = f"{bucket}/run"
    local = train(load_config("gpt_tiny", [f"run_dir={tmp_path / 'local'}", *RUN]))

    stop = StopRequest()
    first = train(load_config("gpt_tiny", [f"run_dir={remote}", *RUN]),
                  [stop, StopAfterStep(stop, 3)])
    assert first.preempted and first.steps == 4
    layout = RunLayout.at(remote)
    assert _committed_steps(layout) == [2, 4]

    resumed = train(load_config("gpt_tiny", [f"run_dir={remote}", *RUN]))
    assert (resumed.start_step, resumed.steps) == (4, 6)
    losses = {r["step"]: r["loss"] for r in local.records}
    assert [(r["step"], r["loss"]) for r in resumed.records] == [(5, losses[5]), (6, losses[6])]
    assert _committed_steps(layout) == [4, 6]  # checkpoint.keep=2 deleted step 2 on the bucket
    assert not layout.lock.exists()

    assert [(r["step"], r["loss"]) for r in read_metrics(remote)] == sorted(losses.items())

    run, reference = open_run(remote), open_run(tmp_path / "local")
    assert run.step == 6 and run.metrics == read_metrics(remote)
    assert jax.tree.structure(run.params) == jax.tree.structure(reference.params)
    for got, want in zip(jax.tree.leaves(run.params), jax.tree.leaves(reference.params),
                         strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    text = "Once upon a time"
    assert run.tokenizer.encode(text) == reference.tokenizer.encode(text)


def _committed_steps(layout: RunLayout) -> list[int]:
    """Checkpoint steps on the bucket that orbax committed (GCS: commit_success.txt inside)."""
    steps = sorted(int(p.name) for p in layout.checkpoints.iterdir() if p.name.isdigit())
    return [s for s in steps if (layout.checkpoints / str(s) / "commit_success.txt").exists()]
