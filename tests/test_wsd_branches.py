"""Cooldown branches (issue 22, item 2): a branch of a warmup-stable-decay run, started from
the parent's checkpoint at step S, trains exactly as a fresh run with the branch's whole
schedule, loss for loss, bit for bit; the sweep file's `branches:` makes them."""

import json
import textwrap

import jax
import pytest

from lmjax.errors import ConfigError
from lmjax.sweep import load_spec, points
from lmjax.sweep import status as status_lib
from lmjax.sweep.branches import horizon
from lmjax.sweep.executors.local import LocalExecutor
from lmjax.sweep.runner import RunOptions, point_dir, run_sweep

# A parent of 40 steps (decay from step 32), a fresh run of 20 steps (decay from 16) and the
# parent's branch at step 16, which must be that fresh run again.
SWEEP = """
    name: branches
    base: gpt_tiny
    overrides: {train.schedule: wsd, train.decay_fraction: 0.2, train.decay_shape: 1-sqrt,
                train.min_lr_ratio: 0.0, train.warmup_steps: 2, train.log_every: 1,
                train.eval_every: 1000, train.eval_batches: 1, train.peak_flops: 1.0e9,
                checkpoint.every: 1000, checkpoint.keep: 1}
    grid: {train.steps: [40, 20]}
    branches: {from: "steps=40", at: [16]}
"""


def sweep_file(tmp_path, text=SWEEP):
    file = tmp_path / "branches.yaml"
    file.write_text(textwrap.dedent(text))
    return load_spec(file, output_dir=str(tmp_path / "sweep"))


@pytest.mark.parametrize("step, fraction, steps", [(16, 0.2, 20), (400, 0.2, 500), (401, 0.2, 501),
                                                   (30, 0.25, 40), (75, 0.5, 150), (74, 0.5, 148)])
def test_a_branch_at_step_s_has_the_horizon_whose_decay_starts_at_s(step, fraction, steps):
    # by hand: T − round_half_up(f·T) = S, e.g. 501 − 100 = 401, 150 − 75 = 75 (149 − 75 = 74)
    assert horizon(step, fraction) == steps


def test_branches_follow_their_parents_which_keep_the_step(tmp_path):
    spec = sweep_file(tmp_path)
    parent, fresh, branch = points(spec)
    assert (parent.name, fresh.name, branch.name) == ("steps=40", "steps=20", "steps=40,branch=16")
    assert parent.config.checkpoint.keep_steps == [16] and fresh.config.checkpoint.keep_steps == []
    assert branch.config.train.steps == 20 and branch.branch == {"parent": parent.dir_name, "step": 16}
    # the branch trains what the fresh run trains, yet is another point: its hash includes
    # the parent and the step; the parent's hash does not change when branches are added
    assert branch.hash != fresh.hash
    unbranched = sweep_file(tmp_path, SWEEP.replace('    branches: {from: "steps=40", at: [16]}\n', ""))
    assert points(unbranched)[0].hash == parent.hash


@pytest.mark.parametrize("change, message", [
    (("train.schedule: wsd", "train.schedule: cosine"), "the parent's train.schedule is cosine"),
    (("at: [16]", "at: [33]"), "the step must lie in the parent's stable phase, steps 2 to 31"),
    (("at: [16]", "at: [1]"), "the step must lie in the parent's stable phase"),
    (('from: "steps=40"', 'from: "steps=80"'), "branches from 'steps=80' match no point"),
    (("at: [16]", "at: [0]"), "at must list steps of 1 or more"),
])
def test_impossible_branches_are_one_line_errors(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        points(sweep_file(tmp_path, SWEEP.replace(*change)))
    assert "\n" not in str(err.value)


def losses(directory):
    records = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r["learning_rate"]) for r in records if "loss" in r}


@pytest.mark.e2e
def test_a_branch_trains_bitwise_as_a_fresh_run_with_its_schedule(tmp_path, monkeypatch):
    jax.devices()  # this process keeps its eight devices; only the workers get one
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    spec = sweep_file(tmp_path)
    found = points(spec)
    parent, fresh, branch = (point_dir(spec, p) for p in found)
    # three workers: the branch would start at once beside its parent if it did not wait
    counts = run_sweep(spec, found, LocalExecutor(workers=3), RunOptions())
    assert counts["succeeded"] == 3, [status_lib.read_status(d) for d in (parent, fresh, branch)]
    assert (parent / "checkpoints" / "16").is_dir()  # kept although checkpoint.keep is 1
    want = losses(fresh)
    assert sorted(want) == list(range(1, 21))
    got = {**{s: v for s, v in losses(parent).items() if s <= 16}, **losses(branch)}
    assert min(losses(branch)) == 17  # the branch trained steps 17..20 only
    assert got == want  # every step's loss and learning rate, exactly
    assert want[20][1] < want[16][1]  # and the decay did happen
    done = status_lib.read_status(branch)["result"]
    assert done["eval_loss"] == status_lib.read_status(fresh)["result"]["eval_loss"]
    assert done["tokens_seen"] == 20 * 8 * 32
    rows = [json.loads(line) for line in (tmp_path / "sweep" / "results.jsonl").read_text().splitlines()]
    assert [row["branch"] for row in rows] == [None, None, {"parent": found[0].dir_name, "step": 16}]


def test_at_may_give_shares_of_the_parents_stable_phase(tmp_path):
    # the parent's decay starts at 40 − 8 = 32; half of that is step 16, a quarter step 8
    spec = sweep_file(tmp_path, SWEEP.replace("at: [16]", "at: [0.5, 0.25]"))
    branches = [p for p in points(spec) if p.branch]
    assert [(p.branch["step"], p.config.train.steps) for p in branches] == [(8, 10), (16, 20)]
