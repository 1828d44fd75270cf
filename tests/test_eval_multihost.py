"""Two processes, one mesh: process 0 drives the harness, process 1 follows its batches; the
metrics equal a single process's."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("lm_eval")

from lmjax import eval as lmeval  # noqa: E402
from lmjax.runs import open_run  # noqa: E402

TASKS = ["lambada", "copa"]
LIMIT = 3
SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    process_id, address, data_dir, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize(address, 2, process_id)
    from lmjax import eval as lmeval, parallel
    from lmjax.config import MeshConfig
    from lmjax.runs import open_run
    mesh = parallel.make_mesh(MeshConfig(data=2, fsdp=2, tensor=1))
    run = open_run(f"{data_dir}/stories260K/stories260K.bin", mesh,
                   tokenizer=f"{data_dir}/stories260K/tok512.model")
    result = lmeval.evaluate(run, %r, data_dir=data_dir, limit=%d)
    assert (result is None) == (process_id != 0)
    if result is not None:
        open(out, "w").write(json.dumps({t: r["metrics"] for t, r in result["tasks"].items()}))
""" % (TASKS, LIMIT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.e2e
def test_two_hosts_give_the_single_host_metrics(tmp_path, data_dir):
    script = tmp_path / "host.py"
    script.write_text(SCRIPT)
    out = tmp_path / "metrics.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    address = f"127.0.0.1:{free_port()}"
    hosts = [subprocess.Popen([sys.executable, str(script), str(pid), address, str(data_dir), str(out)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for pid in (0, 1)]
    for host in hosts:
        _, stderr = host.communicate(timeout=300)
        assert host.returncode == 0, stderr[-3000:]
    run = open_run(data_dir / "stories260K" / "stories260K.bin",
                   tokenizer=data_dir / "stories260K" / "tok512.model")
    single = lmeval.evaluate(run, TASKS, data_dir=str(data_dir), limit=LIMIT)
    got = json.loads(out.read_text())
    for task in TASKS:
        for metric, value in single["tasks"][task]["metrics"].items():
            assert got[task][metric] == pytest.approx(value, rel=1e-5), (task, metric)
