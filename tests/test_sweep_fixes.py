"""Runner fixes (issue 22, item 6): a silent running point shows as stale, a repeated YAML key
and cycles between derived values are one-line errors naming them, and results.jsonl keeps
the rows of points a later edit of the sweep file dropped."""

import json
import os
import time

import pytest

from lmjax import cli
from lmjax.errors import ConfigError
from lmjax.sweep import load_spec, points
from lmjax.sweep import status as status_lib
from lmjax.sweep.runner import point_dir, prepare, regenerate

SWEEP = "base: gpt_tiny\noverrides: {train.steps: 4}\ngrid: {model.d_model: [32, 64]}\n"


def write(tmp_path, text, name="s.yaml"):
    file = tmp_path / name
    file.write_text(f"output_dir: {tmp_path / 'out'}\n{text}")
    return file


def hold(directory, *, seconds_ago, stale_after, host="another-host"):
    """A claim held by a worker on another host whose last heartbeat was `seconds_ago`."""
    claims = directory / status_lib.CLAIMS_DIR
    claims.mkdir(parents=True, exist_ok=True)
    claim = claims / "1"
    claim.write_text(json.dumps({"host": host, "pid": 12345, "token": "t", "number": 1}))
    beat = time.time() - seconds_ago
    os.utime(claim, (beat, beat))
    status_lib.write_status(directory, {"state": "running", "claim": 1, "host": host, "pid": 12345,
                                        "stale_after": stale_after, "attempts": 1})


def test_status_shows_a_point_silent_past_its_limit_as_stale(tmp_path, capsys):
    file = write(tmp_path, SWEEP)
    spec = load_spec(file)
    silent, beating = prepare(spec, points(spec))
    hold(silent, seconds_ago=120, stale_after=60)
    hold(beating, seconds_ago=5, stale_after=60)
    assert cli.main(["sweep", "status", str(file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "2 points: 0 succeeded, 1 running, 0 pending, 0 failed, 0 interrupted, 1 stale" in lines[0]
    state_of = {line.split()[0]: line.split()[2] for line in lines[2:]}
    assert state_of == {"d_model=32": "stale", "d_model=64": "running"}


def test_a_key_given_twice_is_a_one_line_error_naming_it(tmp_path):
    file = write(tmp_path, "base: gpt_tiny\noverrides:\n  train.lr: 1.0e-3\n  train.steps: 5\n"
                           "  train.lr: 3.0e-3\n")
    with pytest.raises(ConfigError, match=r"line 6: the key 'train.lr' is given twice \(first on line 4\)") as err:
        load_spec(file)
    assert "\n" not in str(err.value) and str(file) in str(err.value)


@pytest.mark.parametrize("derived, cycle", [
    ("{a: b + 1, b: a + 1}", "a -> b -> a"),
    ("{train.steps: train.warmup_steps * 10, train.warmup_steps: train.steps // 10}",
     "train.steps -> train.warmup_steps -> train.steps"),
    ("{train.steps: train.steps * 2}", "train.steps -> train.steps"),
])
def test_cycles_between_derived_values_are_one_line_errors_naming_them(tmp_path, derived, cycle):
    file = write(tmp_path, f"base: gpt_tiny\nderived: {derived}\n")
    with pytest.raises(ConfigError, match="cycle") as err:
        points(load_spec(file))
    assert cycle in str(err.value) and "\n" not in str(err.value)


def test_derived_values_may_read_later_ones(tmp_path):
    file = write(tmp_path, "base: gpt_tiny\ngrid: {budget: [800]}\n"
                           "derived: {train.warmup_steps: train.steps // 10, train.steps: budget // 4}\n")
    (point,) = points(load_spec(file))
    assert (point.config.train.steps, point.config.train.warmup_steps) == (200, 20)


def test_results_keep_the_rows_of_points_an_edit_dropped(tmp_path):
    file = write(tmp_path, SWEEP)
    spec = load_spec(file)
    first = points(spec)
    prepare(spec, first)
    status_lib.write_status(point_dir(spec, first[1]), {"state": "succeeded", "result": {"eval_loss": 2.5}})
    file.write_text(file.read_text().replace("[32, 64]", "[32, 128]"))
    spec = load_spec(file)
    regenerate(spec, points(spec))
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    by_name = {row["name"]: row for row in rows}
    assert set(by_name) == {"d_model=32", "d_model=128", "d_model=64"}
    assert by_name["d_model=64"]["listed"] is False and by_name["d_model=64"]["eval_loss"] == 2.5
    assert by_name["d_model=32"]["listed"] is True and by_name["d_model=128"]["listed"] is True
