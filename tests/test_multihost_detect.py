"""Multi-host start-up on a TPU slice: lmjax decides "this is a multi-host slice" from what a
TPU VM really provides, the GCE metadata server (served here on 127.0.0.1, reached through
GCE_METADATA_IP as JAX reaches it) or a GKE pod's environment, and agrees with JAX's own
cluster detection (`jax._src.clusters`), the independent reference, on the job's process count
and this host's id. Two real processes then start one jax.distributed job through it."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import textwrap
import threading

import jax
import pytest
from jax._src import clusters
from jax._src.clusters import cloud_tpu_cluster

from lmjax import multihost, parallel
from lmjax.config import MeshConfig
from lmjax.errors import ConfigError

TPU_VARIABLES = ("TPU_SKIP_MDS_QUERY", "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES",
                 "TPU_WORKER_ID", "MEGASCALE_NUM_SLICES", "MEGASCALE_SLICE_ID",
                 "MEGASCALE_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS",
                 "JAX_COORDINATOR_PORT", "GCE_METADATA_IP")


class _Metadata(http.server.BaseHTTPRequestHandler):
    attributes: dict[str, str] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        prefix = "/computeMetadata/v1/instance/attributes/"
        key = self.path[len(prefix):] if self.path.startswith(prefix) else None
        if self.headers.get("Metadata-Flavor") != "Google" or key not in self.attributes:
            self.send_error(404)
            return
        body = self.attributes[key].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tpu_vm(monkeypatch):
    """A TPU VM as JAX sees it (its import-time verdict set), no TPU variables, and a metadata
    server on 127.0.0.1 whose attributes the test fills in."""
    for name in TPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
    handler = type("Metadata", (_Metadata,), {"attributes": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GCE_METADATA_IP", f"127.0.0.1:{server.server_address[1]}")
    yield handler.attributes
    server.shutdown()


def jax_detection() -> tuple[str | None, int | None, int | None]:
    """What `jax.distributed.initialize()` with no arguments would use: JAX's own code."""
    address, count, process_id, _ = clusters.ClusterEnv.auto_detect_unset_distributed_params(
        None, None, None, None, None, 10)
    return address, count, process_id


def test_a_gce_tpu_vm_worker_reads_its_slice_from_the_metadata_server(tpu_vm):
    # A v4-32 (4 hosts) from `gcloud compute tpus`: the old name:id:ip endpoint format.
    tpu_vm["agent-worker-number"] = "2"
    tpu_vm["worker-network-endpoints"] = ("t1v-n-0:0:10.130.0.7,t1v-n-1:1:10.130.0.8,"
                                          "t1v-n-2:2:10.130.0.9,t1v-n-3:3:10.130.0.10")
    tpu_vm["tpu-env"] = "ACCELERATOR_TYPE: 'v4-32'\nWORKER_ID: '2'\n"
    found = multihost.detect_tpu_slice()
    assert (found.processes, found.process_id, found.multi_host) == (4, 2, True)
    assert "metadata" in found.found_by
    assert jax_detection() == ("10.130.0.7:8482", 4, 2)


def test_the_new_endpoint_format_and_a_multislice_job_count_every_slice(tpu_vm):
    tpu_vm["agent-worker-number"] = "1"
    tpu_vm["worker-network-endpoints"] = "10.0.0.2,10.0.0.3"
    tpu_vm["tpu-env"] = ("MEGASCALE_NUM_SLICES: '2'\nMEGASCALE_SLICE_ID: '1'\n"
                         "MEGASCALE_COORDINATOR_ADDRESS: '10.0.0.2:8080'\n")
    found = multihost.detect_tpu_slice()
    assert (found.processes, found.process_id) == (4, 3)  # slice 1's worker 1 of 2 slices x 2
    assert jax_detection()[1:] == (4, 3)


@pytest.mark.e2e
def test_a_single_host_tpu_vm_is_not_multi_host(tpu_vm):
    tpu_vm["agent-worker-number"] = "0"
    tpu_vm["worker-network-endpoints"] = "t1v-n-0:0:10.130.0.7"
    found = multihost.detect_tpu_slice()
    assert (found.processes, found.multi_host) == (1, False)
    assert jax_detection()[1:] == (1, 0)


@pytest.mark.e2e
def test_a_gke_pod_reads_its_slice_from_the_environment(tpu_vm, monkeypatch):
    # GKE's metadata server has no agent-worker-number; the pod's env lists the hosts.
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "job-0-0.svc,job-0-1.svc,job-0-2.svc,job-0-3.svc")
    monkeypatch.setenv("TPU_WORKER_ID", "3")
    found = multihost.detect_tpu_slice()
    assert (found.processes, found.process_id) == (4, 3)
    assert found.found_by == "TPU_WORKER_HOSTNAMES"
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "127.0.0.1,127.0.0.1,127.0.0.1,127.0.0.1")
    assert jax_detection() == ("127.0.0.1:8482", 4, 3)


@pytest.mark.e2e
def test_tpu_process_addresses_win_over_worker_hostnames_as_in_jax(tpu_vm, monkeypatch):
    monkeypatch.setenv("TPU_SKIP_MDS_QUERY", "1")
    monkeypatch.setenv("TPU_PROCESS_ADDRESSES", "127.0.0.1:8476,127.0.0.1:8477")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "127.0.0.1")
    monkeypatch.setenv("TPU_WORKER_ID", "1")
    found = multihost.detect_tpu_slice()
    assert (found.processes, found.process_id, found.found_by) == (2, 1, "TPU_PROCESS_ADDRESSES")
    assert jax_detection()[1:] == (2, 1)


def test_worker_hostnames_off_a_tpu_vm_are_not_a_slice(tpu_vm, monkeypatch):
    monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", False)
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "10.0.0.2,10.0.0.3")
    monkeypatch.setenv("TPU_WORKER_ID", "0")
    assert multihost.detect_tpu_slice() is None
    assert jax_detection() == (None, None, None)


def test_a_slice_already_running_as_independent_hosts_is_refused(tpu_vm, monkeypatch):
    monkeypatch.setenv("TPU_SKIP_MDS_QUERY", "1")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5")
    monkeypatch.setenv("TPU_WORKER_ID", "0")
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)  # one process alone
    with pytest.raises(ConfigError, match=r"4 hosts .* jax runs 1 process") as err:
        parallel.initialize_distributed(MeshConfig())
    assert "\n" not in str(err.value)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


WORKER = textwrap.dedent("""
    import jax
    from lmjax import parallel
    from lmjax.config import MeshConfig
    parallel.initialize_distributed(MeshConfig())
    print("JOB", jax.process_count(), jax.process_index(), len(jax.devices()), flush=True)
""")


@pytest.mark.slow
def test_two_workers_of_a_fake_slice_start_one_job_with_no_arguments(tmp_path):
    # What the fake gcloud gives each worker: JAX's TPU-VM verdict forced on a CPU machine,
    # the peers' host names, this worker's id and the coordinator's port.
    env = {k: v for k, v in os.environ.items() if k not in TPU_VARIABLES}
    env.update(JAX_FORCE_TPU_INIT="1", JAX_PLATFORMS="cpu", JAX_COORDINATOR_PORT=str(_free_port()),
               TPU_WORKER_HOSTNAMES="127.0.0.1,127.0.0.1", MEGASCALE_NUM_SLICES="1",
               MEGASCALE_SLICE_ID="0", MEGASCALE_COORDINATOR_ADDRESS="127.0.0.1",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    workers = [subprocess.Popen([sys.executable, "-c", WORKER], env={**env, "TPU_WORKER_ID": str(i)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    jobs = sorted(line for out in outputs for line in out.splitlines() if line.startswith("JOB"))
    assert jobs == ["JOB 2 0 4", "JOB 2 1 4"]
