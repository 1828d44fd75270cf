"""The Ray executor on a local Ray instance started here: two tiny points, each a Ray task in
a fresh worker process, both recorded as succeeded. Ray is a dev dependency: a missing Ray
fails this test (CI must run it), it is not skipped."""

import textwrap

import jax
import pytest
import ray

from lmjax.sweep import load_spec, points
from lmjax.sweep import status as status_lib
from lmjax.sweep.executors.ray import RayExecutor, task_options
from lmjax.sweep.runner import RunOptions, point_dir, run_sweep


@pytest.mark.e2e  # a slow end-to-end check: .ci/run's second step
# ray.init starts its processes by fork+exec (subprocess), which JAX's fork warning cannot tell
# from a bare fork; nothing of JAX runs in the child before exec.
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_ray_executor_runs_two_points(tmp_path, monkeypatch):
    jax.devices()  # this process keeps its eight devices; only the workers get one
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    file = tmp_path / "ray.yaml"
    file.write_text(textwrap.dedent("""
        base: gpt_tiny
        overrides: {train.steps: 3, train.peak_flops: 1.0e9, train.eval_batches: 1, checkpoint.every: 5}
        grid: {model.n_layers: [1, 2]}
        resources: {cpus: 1}
    """))
    spec = load_spec(file, output_dir=str(tmp_path / "sweep"))
    found = points(spec)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}})
    try:
        counts = run_sweep(spec, found, RayExecutor(resources=spec.resources), RunOptions())
    finally:
        ray.shutdown()
    assert counts["succeeded"] == 2
    pids = set()
    for point in found:
        record = status_lib.read_status(point_dir(spec, point))
        assert record["result"]["steps"] == 3 and record["result"]["train_loss"] > 0
        assert record["attempts"] == 1
        pids.add(record["pid"])
    assert len(pids) == 2  # max_calls=1: each point in its own worker process


def test_task_options_map_resources():
    assert task_options({"cpus": 4, "gpus": 1}) == {"num_cpus": 4.0, "num_gpus": 1.0, "max_calls": 1, "max_retries": 0}
    assert task_options({"tpus": 4, "v5p-8-head": 1})["resources"] == {"TPU": 4.0, "v5p-8-head": 1.0}
