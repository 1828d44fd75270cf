"""The pod drill: `lmjax tpu` end to end on a two-worker TPU slice played by local processes.

A fake `gcloud` (tests/fake_gcloud/gcloud, first on PATH) runs each worker's command as a local
process in the worker's own home directory, with the environment a TPU VM gives it, so
`jax.distributed.initialize()` finds its peer by JAX's own cluster detection; the run
directory is on the fake GCS server (tests/fake_gcs.py). The drill: create a v4-16 (2 hosts of
4 chips) -> setup (builds this checkout's wheel and installs it into each worker's venv, made
from this interpreter with --system-site-packages; the "image" brings jax) -> an uninterrupted
two-process run for reference -> the same run, preempted after its step-2 checkpoint reaches
the bucket -> `babysit` deletes and recreates the slice, sets it up again and resumes from the
gs:// checkpoint -> its metrics.jsonl equals the reference's bitwise (timing fields aside).
The second drill's first pip install fails, and babysit re-runs the setup."""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile

import jax
import pytest
from etils import epath

from fake_gcs import bucket  # noqa: F401  (the fixture)
from lmjax.cli import main

pytestmark = pytest.mark.e2e  # slow end-to-end checks: .ci/run's second step

FAKE_GCLOUD = pathlib.Path(__file__).parent / "fake_gcloud"
TYPE = "v4-16"  # 2 hosts x 4 chips: two worker processes of 4 CPU devices
TRAIN = ["lmjax", "train", "--config", "gpt_tiny", "train.steps=10", "checkpoint.every=2",
         "train.log_every=1", "train.eval_every=1000"]
TIMING = ("tokens_per_sec", "mfu", "wall_time")


@pytest.fixture
def pod(bucket, tmp_path, monkeypatch):  # noqa: F811 (the fixture)
    """The fake cloud's state directory, the fake gcloud first on PATH (python3 next to it
    being this interpreter), worker venvs from this interpreter with no extras, and the
    output directory on the fake bucket."""
    state = tmp_path / "cloud"
    state.mkdir()
    path = os.pathsep.join([str(FAKE_GCLOUD), os.path.dirname(sys.executable), os.environ["PATH"]])
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("FAKE_GCLOUD_STATE", str(state))
    monkeypatch.setenv("FAKE_GCLOUD_IMAGE_PYTHONPATH", str(pathlib.Path(jax.__file__).parents[1]))
    monkeypatch.setenv("LMJAX_TPU_PYTHON", sys.executable)
    monkeypatch.setenv("LMJAX_TPU_EXTRAS", "")
    monkeypatch.setenv("CLOUDSDK_COMPUTE_ZONE", "us-central2-b")
    monkeypatch.setenv("LMJAX_OUTPUT_DIR", f"{bucket}/runs")
    for name in ("CLOUDSDK_CORE_PROJECT", "LMJAX_TPU_VENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the wheel's build dir: ours alone
    return state


def tpu(*argv: str) -> int:
    return main(["tpu", *argv])


def slice_state(state: pathlib.Path, name: str) -> str:
    slices = json.loads((state / "state.json").read_text())["slices"]
    return slices[name]["state"] if name in slices else "gone"


def metrics_without_timing(run_dir: str) -> list[dict]:
    lines = epath.Path(run_dir, "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def babysit(name: str, run_id: str, command: list[str]) -> int:
    return tpu("babysit", name, "--type", TYPE, "--allow-dirty", "--run-id", run_id,
               "--poll", "1", "--backoff", "1", "--max-attempts", "3", "--", *command)


def test_a_preempted_two_host_run_is_babysat_back_and_matches_an_uninterrupted_one(
        pod, bucket, capfd):  # noqa: F811 (the fixture)
    assert tpu("create", "pod", "--type", TYPE) == 0
    assert tpu("setup", "pod", "--allow-dirty") == 0
    venv = pod / "pod" / "worker-1" / "lmjax-venv"
    assert list(venv.glob("lib/python*/site-packages/lmjax/cli.py")), "the wheel is not installed"
    assert tpu("run", "pod", "--type", TYPE, "--run-id", "reference", "--", *TRAIN) == 0

    drill = f"{bucket}/runs/drill"
    (pod / "preempt.json").write_text(json.dumps(
        {"slice": "pod", "when": f"{drill}/checkpoints/2/commit_success.txt"}))
    assert tpu("run", "pod", "--type", TYPE, "--run-id", "drill", "--", *TRAIN) != 0
    assert slice_state(pod, "pod") == "PREEMPTED"
    interrupted = metrics_without_timing(drill)
    assert interrupted and interrupted[-1]["step"] < 10, "the preemption came too late"
    capfd.readouterr()

    assert babysit("pod", "drill", TRAIN) == 0
    err = capfd.readouterr().err
    assert "slice pod is PREEMPTED: deleting and recreating it" in err
    assert "resuming from step" in err
    assert ("succeeded on attempt 1; 1 slice(s) created; failed attempts: none" in err)
    assert slice_state(pod, "pod") == "ACTIVE"

    reference = metrics_without_timing(f"{bucket}/runs/reference")
    assert [r["step"] for r in reference] == list(range(1, 11))
    assert metrics_without_timing(drill) == reference
    installs = sorted(p.name for p in epath.Path(drill, "installs").iterdir())
    assert installs == ["worker-0.json", "worker-1.json"]
    beats = sorted(p.name for p in epath.Path(drill, "heartbeats").iterdir())
    assert beats == ["process-0.json", "process-1.json"]


def test_a_setup_that_fails_once_is_rerun_by_babysit(pod, bucket, capfd):  # noqa: F811
    (pod / "fail-pip.json").write_text(json.dumps({"times": 1}))
    command = [*TRAIN[:4], "train.steps=2", *TRAIN[5:]]
    assert babysit("pod", "after-setup", command) == 0
    err = capfd.readouterr().err
    assert "no slice pod: creating it" in err
    assert "attempt 1 failed: setup failed: `gcloud compute tpus tpu-vm ssh pod" in err
    assert "succeeded on attempt 2; 1 slice(s) created; failed attempts: setup failed x1" in err
    steps = [r["step"] for r in metrics_without_timing(f"{bucket}/runs/after-setup")]
    assert steps == [1, 2]
