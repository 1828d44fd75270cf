"""Non-finite values are caught in the step, never checkpointed, and a run can continue.

The reproducer is issue 9's: gpt_tiny with train.lr=1e6 has a finite loss (9.7e17) and a NaN
gradient norm at step 4, deterministically (same data order, same seed).
"""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from lmjax import cli
from lmjax.config import load_config
from lmjax.errors import TrainingDiverged
from lmjax.models import build_model
from lmjax.objectives import CausalLM
from lmjax.runs import RunLayout
from lmjax.runs.params import load_params
from lmjax.train import train
from lmjax.train.optimizer import learning_rate_schedule, make_optimizer
from lmjax.train.reporting import read_metrics
from lmjax.train.step import make_train_step

BASE = ["train.log_every=1", "train.eval_every=1000", "train.peak_flops=1e12"]
DIVERGES = ["train.lr=1e6", "train.steps=8"]


def config_for(run_dir, *overrides):
    return load_config("gpt_tiny", [f"run_dir={run_dir}", *BASE, *overrides])


def saved_steps(run_dir) -> list[int]:
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


def strict_json_lines(path) -> list[dict]:
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_without_a_checkpoint_the_error_says_none_was_written(tmp_path):
    with pytest.raises(TrainingDiverged, match="at step 4 .*no checkpoint was written"):
        train(config_for(tmp_path, *DIVERGES, "checkpoint.every=5"), defaults=False)
    assert saved_steps(tmp_path) == []


def test_restart_sets_later_checkpoints_aside_and_repeats_the_earlier_losses(tmp_path):
    reference = train(config_for(tmp_path, "train.steps=8", "checkpoint.every=4", "checkpoint.keep=3"))
    first = {r["step"]: r["loss"] for r in reference.records}
    train(config_for(tmp_path, "train.steps=8", "checkpoint.every=4", "checkpoint.keep=3",
                     "train.lr=1e-3"), restart_from=4)
    again = {r["step"]: r["loss"] for r in read_metrics(tmp_path)}
    assert sorted(again) == list(range(1, 9))
    assert [again[s] for s in range(1, 6)] == [first[s] for s in range(1, 6)]  # step 5 uses the old lr
    assert again[8] != first[8]
    (aside,) = list(RunLayout.at(tmp_path).superseded.iterdir())
    assert sorted(p.name for p in aside.iterdir()) == ["8"]
    assert saved_steps(tmp_path) == [4, 8]


def test_restart_refuses_a_model_change_and_a_missing_step_with_one_line(tmp_path, capsys):
    from lmjax.runs.config_file import save_config

    save_config(tmp_path, config_for(tmp_path, "train.steps=4"))
    for step in (2, 4):  # checkpoint folders: only their names are read before refusing
        (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    run = ["train", "--config", "gpt_tiny", f"run_dir={tmp_path}", "train.steps=4"]
    assert cli.main([*run, "--restart-from", "2", "model.d_model=128"]) == 2
    assert "model.d_model=64 but this run asks for 128" in capsys.readouterr().err
    assert cli.main([*run, "--restart-from", "3", "train.lr=1e-4"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint of step 3" in err and "steps 2, 4" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_skipping_nonfinite_batches_up_to_a_limit_then_stopping(tmp_path):
    with pytest.raises(TrainingDiverged, match="more than train.skip_nonfinite_batches=2 batches"):
        train(config_for(tmp_path, *DIVERGES, "train.skip_nonfinite_batches=2", "checkpoint.every=1"))
    rows = strict_json_lines(tmp_path / "metrics.jsonl")
    skipped = [r["step"] for r in rows if r["loss"] is None or r["grad_norm"] is None]
    assert len(skipped) == 2 and rows[-1]["skipped_batches"] == 2, rows
    params = load_params(tmp_path)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def nan_batch(config) -> dict:
    rng = np.random.default_rng(0)
    objective = CausalLM(pad_id=255)
    examples = [objective.make_example(w, rng)
                for w in rng.integers(0, 255, (8, config.data.seq_len + 1))]
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    batch["weights"] = batch["weights"] * np.float32(np.nan)  # a corrupted batch
    return batch


@pytest.mark.parametrize("skip", [False, True])
def test_the_step_flags_a_nonfinite_batch_and_skipping_keeps_the_state_bitwise(skip):
    config = load_config("gpt_tiny", ["train.warmup_steps=0"])
    model, optimizer = build_model(config.model), make_optimizer(config.train)
    batch = nan_batch(config)
    params = nn.unbox(model.init(jax.random.key(0), input_ids=batch["inputs"][:1]))["params"]
    state = {"step": jax.numpy.zeros((), "int32"), "params": params, "opt_state": optimizer.init(params)}
    step = jax.jit(make_train_step(model, CausalLM(pad_id=255), optimizer,
                                   learning_rate_schedule(config.train), skip_nonfinite=skip))
    new_state, metrics = step(state, batch)
    assert not bool(metrics["finite"]) and np.isnan(metrics["loss"])
    kept = [np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new_state["params"]),
                                                jax.tree.leaves(params))]
    assert all(kept) if skip else not any(kept)
    assert int(new_state["step"]) == 1
