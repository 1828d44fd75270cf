"""Post-training runs on the one training engine: --out is a run directory (config.yaml,
posttrain.yaml, checkpoints/, metrics.jsonl, tensorboard/, the lock) that the same command
resumes after kill -9, ending bitwise where an uninterrupted run ends; other settings are
refused in one line."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lmjax.cli import main
from lmjax.runs.open import open_run

DATA = pathlib.Path(os.environ.get("LMJAX_DATA_DIR", "")) / "stories260K"
MODEL = ["--from", str(DATA / "stories260K.bin"), "--tokenizer", str(DATA / "tok512.model")]
# Timing fields differ between any two runs; every other logged number must not.
TIMING = {"tokens_per_sec", "mfu", "wall_time"}
# 16 stories of 24 tokens per update: some use their word, so rewards, KL and gradients are
# not all zero and the parameters move (at this learning rate, visibly).
PPO = ["posttrain", "ppo", *MODEL, "--updates", "4", "--prompts-per-update", "16", "--max-new-tokens", "24",
       "--seq-len", "48", "--lr", "0.01", "--max-kl", "0"]


def sft_args(tmp_path) -> list[str]:
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Write a story about a {word}.",
                                        "response": f"Once upon a time, there was a {word}."}) + "\n"
                            for word in ("dog", "cat", "bird", "fish", "frog", "bear")))
    return ["posttrain", "sft", *MODEL, "--data", str(data), "--steps", "24", "--batch-size", "2",
            "--seq-len", "48", "--log-every", "1", "--checkpoint-every", "4"]


def deterministic(run_dir) -> list[dict]:
    lines = (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def kill_after_checkpoint(args: list[str], out: pathlib.Path, step: int) -> None:
    """Starts the command in a subprocess and SIGKILLs it once checkpoint `step` is finished
    (orbax names a checkpoint by its step only when it is complete), while it still runs."""
    process = subprocess.Popen([sys.executable, "-m", "lmjax.cli", *args, "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not (out / "checkpoints" / str(step)).is_dir():
        assert process.poll() is None, f"the run ended before checkpoint {step}: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL and not (out / "params").exists()


def assert_same_run(resumed: pathlib.Path, full: pathlib.Path) -> None:
    assert deterministic(resumed) == deterministic(full)
    jax.tree.map(np.testing.assert_array_equal, open_run(resumed).params, open_run(full).params)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_ppo_run_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path, capsys):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main([*PPO, "--out", str(full)]) == 0
    kill_after_checkpoint(PPO, killed, step=2 * 4)  # 4 steps per update: 2 epochs × 2 minibatches
    assert main([*PPO, "--out", str(killed)]) == 0
    assert "resuming from step 8" in capsys.readouterr().err
    records = deterministic(full)
    assert [r["step"] for r in records] == [4, 8, 12, 16]  # one record per update
    assert {"reward", "kl", "word_use_rate", "value_loss"} <= set(records[0])
    assert records[-1]["kl"] > 0 and len({r["param_norm"] for r in records}) == 4  # it did train
    assert_same_run(killed, full)
    for name in ("config.yaml", "posttrain.yaml", "reward_head.npz", "chat_template.json"):
        assert (killed / name).is_file(), name
    assert list((killed / "tensorboard").glob("events.out.tfevents.*")) and not (killed / ".lock").exists()


@pytest.mark.e2e
@pytest.mark.slow
def test_an_sft_run_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    args, full, killed = sft_args(tmp_path), tmp_path / "full", tmp_path / "killed"
    assert main([*args, "--out", str(full)]) == 0
    kill_after_checkpoint(args, killed, step=8)
    assert main([*args, "--out", str(killed)]) == 0
    assert [r["step"] for r in deterministic(full)] == list(range(1, 25))
    assert_same_run(killed, full)


def test_other_settings_in_the_same_out_are_refused_in_one_line(tmp_path, capsys):
    args, out = sft_args(tmp_path), tmp_path / "out"
    short = [a if a != "24" else "2" for a in args]
    assert main([*short, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*short, "--out", str(out), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "train.lr=0.001" in err and "0.5" in err and err.count("\n") == 1
    assert main([*short, "--out", str(out), "--seq-len", "40"]) == 2
    assert "seq_len=48" in capsys.readouterr().err
    assert main([*short, "--out", str(out)]) == 0  # the finished run again: nothing to train
    assert [r["step"] for r in deterministic(out)] == [1, 2]


def test_a_directory_holding_something_else_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([*sft_args(tmp_path), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_ppo_stops_in_one_line_when_the_kl_exceeds_max_kl(tmp_path, capsys):
    out = tmp_path / "ppo"
    assert main([*PPO, "--out", str(out), "--lr", "0.05", "--max-kl", "0.01"]) == 0  # the last --lr, --max-kl count
    err = capsys.readouterr().err
    stop = [line for line in err.splitlines() if line.startswith("stopped at update")]
    assert len(stop) == 1 and "above --max-kl 0.01" in stop[0], err[-2000:]
    update = int(stop[0].split()[3].rstrip(":"))
    assert 1 < update <= 4
    assert [r["step"] for r in deterministic(out)][-1] == (update - 1) * 4
    assert open_run(out).params is not None
