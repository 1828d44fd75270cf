"""End-to-end training runs: learning, a NaN loss, several hosts, the run's tokenizer.

Kill -9, SIGTERM and the other faults are tests/test_faults.py's. Runs that talk to another
process go through real subprocesses of `lmjax train`; the rest run in-process on the 8
simulated devices.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from lmjax.config import load_config
from lmjax.data import build_tokenizer, unigram_entropy_nats
from lmjax.errors import TrainingDiverged
from lmjax.train import train
from lmjax.train.reporting import read_metrics

TINY = ["train.log_every=1", "checkpoint.every=4"]


def lmjax_command(run_dir, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "lmjax.cli", "train", "--config", "gpt_tiny",
            f"run_dir={run_dir}", *TINY, *overrides]


def run_lmjax(run_dir, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(lmjax_command(run_dir, *overrides), capture_output=True, text=True,
                          env=env, timeout=300)


def losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir)}


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    config = load_config("gpt_tiny", [f"run_dir={tmp_path}", *TINY, "train.steps=12",
                                      "train.lr=1e12", "train.warmup_steps=0", "train.grad_clip=0",
                                      "checkpoint.every=1"])
    with pytest.raises(TrainingDiverged, match=r"at step (\d+) .*the latest checkpoint is step") as err:
        train(config).records
    bad_step = int(str(err.value).split("at step ")[1].split()[0])
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) == bad_step - 1
    assert f"the latest checkpoint is step {bad_step - 1}" in str(err.value)
    assert all(np.isfinite(loss) for loss in losses(tmp_path).values())


def test_short_run_on_tiny_shakespeare_beats_the_unigram_entropy(tmp_path):
    config = load_config("gpt_tiny", [f"run_dir={tmp_path}", "train.steps=150",
                                      "train.log_every=50", "train.eval_every=150",
                                      "train.eval_batches=8", "checkpoint.every=150"])
    records = train(config).records
    unigram = unigram_entropy_nats(config.data, build_tokenizer(config.data, config.model.vocab_size))
    final = records[-1]
    assert final["eval_loss"] < unigram - 0.2, (final["eval_loss"], unigram)
    assert (tmp_path / "loss_curve.png").stat().st_size > 10_000
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    fields = {"step", "loss", "learning_rate", "tokens_seen", "tokens_per_sec", "mfu", "wall_time"}
    assert all(fields <= set(r) for r in read_metrics(tmp_path))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.e2e  # a slow end-to-end check: .ci/run's second step
def test_two_processes_match_one_process(tmp_path):
    steps = ["train.steps=3", "train.eval_every=1000"]

    def env_with_devices(count: int) -> dict:
        return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"}

    single = run_lmjax(tmp_path / "single", *steps, env=env_with_devices(4))
    assert single.returncode == 0, single.stderr[-2000:]

    address = f"127.0.0.1:{free_port()}"
    hosts = [
        subprocess.Popen(
            lmjax_command(tmp_path / "multi", *steps, f"mesh.coordinator_address={address}",
                          "mesh.num_processes=2", f"mesh.process_id={pid}"),
            env=env_with_devices(2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for pid in (0, 1)
    ]
    for host in hosts:
        _, stderr = host.communicate(timeout=300)
        assert host.returncode == 0, stderr[-2000:]
    expected, got = losses(tmp_path / "single"), losses(tmp_path / "multi")
    assert sorted(got) == [1, 2, 3]
    np.testing.assert_allclose([got[s] for s in (1, 2, 3)], [expected[s] for s in (1, 2, 3)],
                               rtol=1e-5)
    config = json.dumps(sorted(os.listdir(tmp_path / "multi")))
    assert "metrics.jsonl" in config and "checkpoints" in config


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_the_config_picks_the_tokenizer_and_the_run_dir_keeps_it(tmp_path, kind):
    from lmjax.tokenizers import load

    config = load_config("gpt_tiny", [f"run_dir={tmp_path}", f"data.tokenizer={kind}",
                                      "model.vocab_size=512", "train.steps=2"])
    records = train(config).records
    assert np.isfinite(records[-1]["eval_loss"])
    tokenizer = load(tmp_path / "tokenizer")
    assert tokenizer.kind == kind and tokenizer.vocab_size <= 512
    decoded = tokenizer.decode(tokenizer.encode("First Citizen:"))
    assert decoded.replace(" ", "") == "FirstCitizen:"  # WordPiece decodes with BERT's spacing
