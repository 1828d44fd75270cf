"""`lmjax.train.train` as a library: same losses as the CLI, from any thread, with callbacks
and a RunResult whose counts check against independent ones."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import warnings

import jax
import numpy as np
import pytest

from lmjax import xla_cpu
from lmjax.config import load_config
from lmjax.data import build_tokenizer, prepare_corpus
from lmjax.runs.params import load_params
from lmjax.train import Callback, StopRequest, train
from lmjax.train.reporting import read_metrics
from lmjax.train.setup import token_byte_lengths

RUN = ["train.log_every=1", "train.eval_every=1000", "train.peak_flops=1e12", "checkpoint.every=3"]


def in_thread(function):
    """Runs `function` in a worker thread; returns its value or raises its exception."""
    out = {}

    def target():
        try:
            out["value"] = function()
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            out["error"] = err

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.e2e  # a slow end-to-end check: .ci/run's second step
def test_train_in_a_worker_thread_matches_the_cli_bitwise(tmp_path):
    overrides = [*RUN, "train.steps=4"]
    cli = subprocess.run([sys.executable, "-m", "lmjax.cli", "train", "--config", "gpt_tiny",
                          f"run_dir={tmp_path / 'cli'}", *overrides],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert xla_cpu.applied() == xla_cpu.wanted()  # this process runs with the CLI's flags
    result = in_thread(lambda: train(load_config("gpt_tiny", [f"run_dir={tmp_path / 'lib'}",
                                                               *overrides])))
    from_cli = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "cli")]
    from_python = [(r["step"], r["loss"]) for r in result.records]
    assert from_python == from_cli and len(from_cli) == 4

    config = load_config("gpt_tiny")
    batch_tokens = config.train.global_batch_size * config.data.seq_len
    assert result.tokens_seen == result.input_tokens_seen == 4 * batch_tokens  # GPT: all carry loss
    params = load_params(tmp_path / "lib")
    assert result.parameters == sum(int(np.size(x)) for x in jax.tree.leaves(params))
    embedding = params["wte"]["embedding"].size + params["wpe"]["embedding"].size
    assert (result.embedding_parameters, result.non_embedding_parameters) == (
        embedding, result.parameters - embedding)
    assert result.eval_bits_per_byte == pytest.approx(
        result.records[-1]["eval_loss"] * result.records[-1]["eval_tokens"]
        / (math.log(2) * result.records[-1]["eval_bytes"]), rel=1e-9)
    assert result.to_dict()["steps"] == 4 and not result.preempted


class StopAtStep(Callback):
    def __init__(self, stop: StopRequest, step: int):
        self.stop, self.step = stop, step

    def on_log(self, step, record):
        if step >= self.step:
            self.stop.request()


def test_a_stop_request_from_a_callback_saves_and_returns_preempted(tmp_path):
    stop = StopRequest()
    config = load_config("gpt_tiny", [f"run_dir={tmp_path}", *RUN, "train.steps=50",
                                      "checkpoint.every=50"])
    result = in_thread(lambda: train(config, [stop, StopAtStep(stop, 2)]))
    assert result.preempted and result.steps == 3  # asked during step 2's log, seen at step 3
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["3"]


def test_bert_counts_only_the_tokens_that_carry_loss(tmp_path):
    config = load_config("bert_tiny", [f"run_dir={tmp_path}", *RUN, "train.steps=2",
                                       "train.eval_every=2", "train.eval_batches=1"])
    result = train(config, defaults=False)
    share = result.tokens_seen / result.input_tokens_seen
    assert result.input_tokens_seen == 2 * config.train.global_batch_size * config.data.seq_len
    assert abs(share - config.data.mask_prob) < 0.05, share  # BERT predicts ~15% of positions


def test_token_byte_lengths_add_up_to_the_text(tmp_path):
    config = load_config("gpt_tiny")
    tokenizer = build_tokenizer(config.data, config.model.vocab_size)
    text = "\n\n".join(d["text"] if isinstance(d["text"], str) else d["text"].decode()
                       for d in list(prepare_corpus(config.data).documents("validation"))[:50])
    lengths = token_byte_lengths(tokenizer, config.model.vocab_size)
    counted = lengths[tokenizer.encode(text)].sum()
    assert counted == pytest.approx(len(text.encode("utf-8")), rel=0.02)


def test_flags_set_after_jax_started_are_reported_once(monkeypatch):
    monkeypatch.setenv("LMJAX_CPU_FLAGS", "1")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    monkeypatch.setattr(xla_cpu, "accelerator_installed", lambda: False)
    monkeypatch.setattr(xla_cpu, "_state", {"late": False, "warned": False})
    jax.devices()  # JAX's backend starts here, before the flags are added
    xla_cpu.apply_cpu_flags()
    assert not xla_cpu.applied()
    with pytest.warns(UserWarning, match="JAX was initialised before lmjax was imported"):
        xla_cpu.warn_if_not_applied()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xla_cpu.warn_if_not_applied()


def test_evaluation_runs_on_every_eval_step_even_between_log_steps(tmp_path):
    config = load_config("gpt_tiny", [f"run_dir={tmp_path}", "train.log_every=4", "train.eval_every=3",
                                      "train.steps=6", "train.eval_batches=1", "checkpoint.every=6"])
    train(config)
    evaluated = [r["step"] for r in read_metrics(tmp_path) if "eval_loss" in r]
    assert evaluated == [3, 6]
