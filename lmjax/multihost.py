"""Whether this process is one host of a multi-host Cloud TPU slice, decided as JAX decides it.

`jax.distributed.initialize()` with no arguments finds its peers through JAX's cluster
detection (jax/_src/clusters/cloud_tpu_cluster.py), and lmjax must agree with it on *whether*
there are peers, or a v4-32 trains as four independent single-host runs. JAX's rules, followed
here in its order:

1. Only on a Cloud TPU VM: JAX's own verdict at import (libtpu and TPU chips on the PCI bus,
   or JAX_FORCE_TPU_INIT), the `running_in_cloud_tpu_vm` its TPU cluster code reads. Without chips
   JAX also sets TPU_SKIP_MDS_QUERY, which rules out step 2.
2. GCE (a TPU VM from `gcloud compute tpus`), unless TPU_SKIP_MDS_QUERY is set: the metadata
   server answers `agent-worker-number` (this host's id) and `worker-network-endpoints` (every
   host, comma-separated, either `name` or `name:id:ip`).
3. GKE: TPU_PROCESS_ADDRESSES or else TPU_WORKER_HOSTNAMES lists the hosts, TPU_WORKER_ID is
   this host's id.

Either way the job has hosts-per-slice x MEGASCALE_NUM_SLICES processes (the variable, or the
`tpu-env` metadata entry of that name; 1 without either). A host with no metadata server (a
GKE pod, the test suite's fake slice) sets MEGASCALE_NUM_SLICES, MEGASCALE_SLICE_ID and
MEGASCALE_COORDINATOR_ADDRESS itself, or JAX's start-up fails asking the metadata server. A slice of more than one process is
multi-host. The metadata server is reached at $GCE_METADATA_IP (default
metadata.google.internal), as JAX reaches it, so tests can serve it on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping

from lmjax.errors import ConfigError

Metadata = Callable[[str], "str | None"]  # a metadata key -> its value, None when absent


@dataclasses.dataclass(frozen=True)
class TpuSlice:
    """This process's place in a TPU job: how many processes it has and which one this is."""

    processes: int
    process_id: int
    found_by: str  # where the host list came from, for error messages

    @property
    def multi_host(self) -> bool:
        return self.processes > 1


def gce_metadata(key: str) -> str | None:
    """An instance attribute from the GCE metadata server; None if it has no such key or no
    server answers (off GCE), after a few tries as JAX makes them."""
    host = os.environ.get("GCE_METADATA_IP", "metadata.google.internal")
    request = urllib.request.Request(
        f"http://{host}/computeMetadata/v1/instance/attributes/{key}",
        headers={"Metadata-Flavor": "Google"})
    for _ in range(3):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.read().decode()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
        except OSError:
            pass
    return None


def running_on_tpu_vm() -> bool:
    """JAX's own verdict, taken when jax was imported (see the module docstring)."""
    import jax  # noqa: F401  (runs cloud_tpu_init, which sets the flag)
    from jax._src.clusters import cloud_tpu_cluster

    return bool(cloud_tpu_cluster.running_in_cloud_tpu_vm)


def detect_tpu_slice() -> TpuSlice | None:
    """The TPU job this process belongs to, or None when JAX would find no TPU cluster."""
    env, metadata = os.environ, gce_metadata
    if not running_on_tpu_vm():
        return None
    worker = metadata("agent-worker-number") if env.get("TPU_SKIP_MDS_QUERY") is None else None
    if worker is not None:
        hosts = _endpoint_hosts(metadata("worker-network-endpoints") or "")
        return _slice(hosts, worker, env, metadata, "the GCE metadata server's worker-network-endpoints")
    variable = next((v for v in ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES") if v in env), None)
    if variable is None:
        return None
    return _slice(env[variable].split(","), env.get("TPU_WORKER_ID", ""), env, metadata, variable)


def _slice(hosts: list[str], worker: str, env: Mapping[str, str], metadata: Metadata,
           found_by: str) -> TpuSlice:
    """Process count and id over all slices of a (maybe multi-slice) job."""
    try:
        worker_id = int(worker)
        slices = int(_tpu_env(env, metadata, "MEGASCALE_NUM_SLICES") or 1)
        slice_id = int(_tpu_env(env, metadata, "MEGASCALE_SLICE_ID") or 0)
    except ValueError as err:
        raise ConfigError(f"this TPU VM announces its slice inconsistently ({err}); "
                          f"hosts from {found_by}") from None
    return TpuSlice(len(hosts) * slices, worker_id + slice_id * len(hosts), found_by)


def _endpoint_hosts(endpoints: str) -> list[str]:
    """worker-network-endpoints in either format JAX accepts: `name` or `name:id:ip`."""
    hosts = []
    for worker in endpoints.split(","):
        parts = worker.split(":")
        if len(parts) not in (1, 3):
            raise ConfigError(f"the GCE metadata's worker-network-endpoints entry {worker!r} is "
                              "neither HOST nor NAME:ID:IP")
        hosts.append(parts[-1])
    return hosts


def _tpu_env(env: Mapping[str, str], metadata: Metadata, key: str) -> str | None:
    """A TPU setting from the environment, else from the metadata's `tpu-env` (KEY: 'value'
    lines), as JAX's `get_tpu_env_value` reads it (whatever TPU_SKIP_MDS_QUERY says)."""
    if key in env:
        return env[key]
    value = None
    for line in (metadata("tpu-env") or "").split("\n"):
        if ":" in line:
            name, raw = re.split(":", line, maxsplit=1)
            if name.strip() == key:
                value = raw.strip().strip("'")
    return value


def check_processes(tpu_slice: TpuSlice | None, process_count: int) -> None:
    """A multi-host slice must run as one job over all its hosts, never as independent ones."""
    if tpu_slice is not None and tpu_slice.processes != process_count:
        raise ConfigError(
            f"this TPU slice has {tpu_slice.processes} hosts (from {tpu_slice.found_by}) but "
            f"jax runs {process_count} process(es): start the same command on every worker "
            "(lmjax tpu run NAME -- ...) and leave mesh.num_processes unset")
