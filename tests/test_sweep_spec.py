"""Sweep files: grid × zip × derived expansion, the safe evaluator, point identity, and
claims (atomic under concurrency, re-claimed when stale). No training here."""

import dataclasses
import json
import multiprocessing
import os
import textwrap
import time

import pytest

from lmjax.config import Config
from lmjax.errors import ConfigError
from lmjax.sweep import load_spec, points
from lmjax.sweep import identity
from lmjax.sweep import status as status_lib
from lmjax.sweep.expressions import ExpressionError, evaluate
from lmjax.sweep.identity import identity_fields


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


SWEEP = """
    name: demo
    base: gpt_tiny
    overrides: {train.steps: 40, train.log_every: 5}
    grid:
      model.d_model: [32, 64]
    zip:
      model.n_layers: [1, 2, 3]
      tokens: [1280, 2560, 5120]
    derived:
      train.steps: tokens // (train.global_batch_size * data.seq_len)
      train.warmup_steps: max(1, train.steps // 4)
"""


@pytest.mark.smoke
def test_grid_zip_derived_expand_to_the_product(tmp_path):
    spec = load_spec(write(tmp_path, SWEEP), output_dir=str(tmp_path / "out"))
    found = points(spec)
    assert len(found) == 2 * 3
    assert [p.name for p in found[:3]] == [
        "d_model=32,n_layers=1,tokens=1280", "d_model=32,n_layers=2,tokens=2560",
        "d_model=32,n_layers=3,tokens=5120"]
    for point in found:
        config, tokens = point.config, point.variables["tokens"]
        assert config.model.d_model == point.values["model.d_model"]
        assert config.model.n_layers == point.values["model.n_layers"]
        assert config.train.steps == tokens // (8 * 32)  # gpt_tiny: batch 8, seq_len 32
        assert config.train.warmup_steps == max(1, config.train.steps // 4)
        assert config.train.log_every == 5
        assert config.run_dir == str(tmp_path / "out" / point.dir_name)
    assert len({p.hash for p in found}) == 6


def test_same_file_same_hashes_logging_change_keeps_model_change_alters(tmp_path):
    first = {p.name: p.hash for p in points(load_spec(write(tmp_path, SWEEP)))}
    again = {p.name: p.hash for p in points(load_spec(write(tmp_path, SWEEP, "copy.yaml")))}
    assert first == again
    logging = SWEEP.replace("train.log_every: 5", "train.log_every: 7, train.eval_every: 3, "
                            "checkpoint.every: 2, data.cache_dir: /elsewhere")
    assert {p.name: p.hash for p in points(load_spec(write(tmp_path, logging, "l.yaml")))} == first
    model = SWEEP.replace("model.d_model: [32, 64]", "model.d_model: [32, 48]")
    changed = {p.name: p.hash for p in points(load_spec(write(tmp_path, model, "m.yaml")))}
    kept = [n for n in changed if n.startswith("d_model=32")]
    assert all(changed[n] == first[n] for n in kept)  # untouched points keep their identity
    new = [n for n in changed if n.startswith("d_model=48")]
    assert len(new) == 3 and not set(changed[n] for n in new) & set(first.values())
    # keys at their defaults are not hashed, so a key lmjax adds later (default = old
    # behaviour) keeps every existing point's hash
    fields = identity_fields(points(load_spec(write(tmp_path, SWEEP, "f.yaml")))[0].config)
    assert "train.skip_nonfinite_batches" not in fields and "train.eval_tasks" not in fields
    assert fields["model.d_model"] == 32 and fields["train.steps"] == 5
    lr = SWEEP.replace("train.log_every: 5", "train.log_every: 5, train.lr: 0.002")
    assert not set(p.hash for p in points(load_spec(write(tmp_path, lr, "lr.yaml")))) & set(first.values())


def test_preset_base_and_hydra_style_overrides(tmp_path):
    spec = load_spec(write(tmp_path, """
        base: gpt3-small
        overrides: ["train.steps=10", "data.seq_len=64"]
        grid: {model.n_layers: [1, 2]}
        zip: {budget: [1.0e3, 2.0e+3]}
        derived: {train.eval_batches: budget // 1000}
    """))
    found = points(spec)
    assert [p.config.train.eval_batches for p in found] == [1, 2, 1, 2]  # 1.0e3 is a number, not YAML 1.1's string
    found = found[::2]
    assert [p.config.model.d_model for p in found] == [768, 768]
    assert [p.config.model.n_layers for p in found] == [1, 2]
    assert found[0].config.model.preset == "gpt3-small" and found[0].config.train.steps == 10


def test_eval_tasks_become_each_points_train_eval_tasks(tmp_path):
    spec = load_spec(write(tmp_path, "base: gpt_tiny\ngrid: {model.n_layers: [1, 2]}\neval_tasks: [lambada, wikitext2]\n"))
    found = points(spec)
    assert [p.config.train.eval_tasks for p in found] == [["lambada", "wikitext2"]] * 2
    assert [p.eval_tasks for p in found] == [["lambada", "wikitext2"]] * 2
    plain = points(load_spec(write(tmp_path, "base: gpt_tiny\ngrid: {model.n_layers: [1, 2]}\n", "plain.yaml")))
    assert {p.hash for p in plain}.isdisjoint(p.hash for p in found)  # their results differ


@pytest.mark.parametrize("text, message", [
    ("base: gpt_tiny\ngird: {model.d_model: [1]}\n", "unknown key 'gird'"),
    ("base: gpt_tiny\ngrid: {model.d_modle: [32]}\n", "grid.model.d_modle: unknown config key"),
    ("base: gpt_tiny\ngrid: {model.d_model: 32}\n", "grid.model.d_model must be a non-empty list"),
    ("base: gpt_tiny\nzip: {model.d_model: [32, 64], model.n_layers: [1]}\n", "zip lists differ in length"),
    ("base: gpt_tiny\nderived: {train.steps: 'train.stepz * 2'}\n", "derived.train.steps: unknown name 'train.stepz'"),
    ("base: gpt_tiny\nderived: {train.steps: '10 / 4'}\n", "derived.train.steps = 2.5 is not a whole number"),
    ("base: gpt_tiny\nderived: {train.steps: '(1'}\n", "derived.train.steps"),
    ("base: gpt_tiny\ngrid: {model.n_heads: [3]}\n", "point n_heads=3: model.n_heads=3 does not divide"),
    ("base: gpt_tiny\ngrid: {run_dir: [a]}\n", "grid.run_dir: the sweep sets run_dir"),
    ("base: no_such_config\n", "base 'no_such_config'"),
])
def test_bad_sweep_files_are_one_line_errors_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        points(load_spec(write(tmp_path, text)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_evaluator_arithmetic_against_python():
    names = {"a": 7, "train.steps": 12, "x": 2.5}
    cases = ["a + train.steps * 2", "-a ** 2", "(a - 1) // 4 % 5", "train.steps / 8", "x ** -1",
             "min(a, train.steps, 3) + max(1, 2)", "round(x * 3)", "int(x) + float(a)",
             "log(train.steps) + sqrt(16)", "abs(-a) + +a"]
    import math
    for expression in cases:
        python = expression.replace("train.steps", "steps").replace("log(", "math.log(").replace("sqrt(", "math.sqrt(")
        assert evaluate(expression, names) == eval(python, {"math": math}, {"a": 7, "steps": 12, "x": 2.5})


@pytest.mark.parametrize("expression", [
    "().__class__", "a.__class__", "train.steps.real.__class__", "__import__('os')",
    "open('/etc/passwd')", "(lambda: 1)()", "[i for i in range(3)]", "{1: 2}[1]", "'a' * 3",
    "a if a else 1", "a < 3", "eval('1')", "getattr(a, 'real')", "min(*[1, 2])", "10 ** 10 ** 10",
    "round(x=1)",
])
def test_evaluator_refuses_everything_else(expression):
    with pytest.raises(ExpressionError):
        evaluate(expression, {"a": 7, "train.steps": 12})


@pytest.mark.parametrize("expression", [
    "((9**999)**999)**999 // 1",  # each exponent under the cap, the result astronomically large
    "10**1000", "2 ** 257", "(2 ** 200) * (2 ** 200)", "int(1e300) * 1", "1e308 * 10",
    "1e308 * 10 - 1e308 * 10", "-" * 200_000 + "1", "-" * 900 + "1",
], ids=["power_tower", "pow_1000", "pow_257_bits", "product", "int_of_float", "inf", "nan",
        "long", "deep"])
def test_evaluator_refuses_oversized_work_at_once_in_one_line(expression):
    start = time.perf_counter()
    with pytest.raises(ExpressionError) as err:
        evaluate(expression, {})
    assert time.perf_counter() - start < 1.0
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_evaluator_bounds_leave_every_realistic_value():
    assert evaluate("2 ** 255 + (2 ** 255 - 1)", {}) == 2 ** 256 - 1
    assert evaluate("10 ** 18 * 3 // 7", {}) == 3 * 10 ** 18 // 7
    assert evaluate("(-2) ** 255", {}) == -(2 ** 255)
    assert evaluate("2.0 ** -1000 + 1e300", {}) == 2.0 ** -1000 + 1e300
    assert evaluate("-" * 40 + "3", {}) == 3


def test_oversized_derived_value_names_the_file_and_key(tmp_path):
    path = write(tmp_path, "base: gpt_tiny\nderived: {train.steps: '10**1000'}\n")
    with pytest.raises(ConfigError) as err:
        points(load_spec(path))
    message = str(err.value)
    assert str(path) in message and "derived.train.steps" in message and "\n" not in message


def _race(point_dir, barrier, queue):
    barrier.wait()
    claim = status_lib.try_claim(point_dir, stale_after=600)
    queue.put(claim.number if claim else None)
    barrier.wait()  # the winner stays alive until every racer has tried (a dead one may be replaced)


def test_racing_processes_claim_each_point_once(tmp_path):
    dirs = [str(tmp_path / f"p{i}") for i in range(4)]
    context = multiprocessing.get_context("fork")
    racers = 6
    queue = context.Queue()
    for point_dir in dirs:
        barrier = context.Barrier(racers)
        processes = [context.Process(target=_race, args=(point_dir, barrier, queue)) for _ in range(racers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        got = [queue.get() for _ in range(racers)]
        assert sorted(got, key=str) == [1] + [None] * (racers - 1), got
        assert [p.name for p in (tmp_path / os.path.basename(point_dir) / "claims").iterdir()
                if not p.name.count(".")] == ["1"]


def test_stale_heartbeat_is_reclaimed_and_the_old_holder_learns_it(tmp_path):
    point_dir = tmp_path / "p"
    first = status_lib.try_claim(point_dir, stale_after=60)
    status_lib.write_status(point_dir, status_lib.running_record(first, 1))
    assert status_lib.try_claim(point_dir, stale_after=60) is None  # fresh and alive: busy
    old = time.time() - 120
    os.utime(first.path, (old, old))  # the holder (another host) has been silent for 2 minutes
    second = status_lib.try_claim(point_dir, stale_after=60)
    assert second is not None and second.number == 2
    assert not first.heartbeat() and second.heartbeat()  # the old holder sees it lost the point


def test_dead_holder_on_this_host_is_reclaimed_at_once(tmp_path):
    point_dir = tmp_path / "p"
    context = multiprocessing.get_context("fork")
    child = context.Process(target=status_lib.try_claim, args=(point_dir,), kwargs={"stale_after": 600})
    child.start()
    child.join()
    assert status_lib.availability(point_dir, stale_after=600) == "open"  # its pid is gone
    assert status_lib.try_claim(point_dir, stale_after=600).number == 2


def test_finished_claims_release_and_retry_rules(tmp_path):
    point_dir = tmp_path / "p"
    claim = status_lib.try_claim(point_dir, stale_after=600)
    status_lib.write_status(point_dir, {**status_lib.running_record(claim, 1), "state": "failed", "error": "x"})
    assert status_lib.availability(point_dir, stale_after=600, retry=False) == "done"
    assert status_lib.try_claim(point_dir, stale_after=600).number == 2
    status_lib.write_status(point_dir, {"state": "succeeded", "claim": 2})
    assert status_lib.try_claim(point_dir, stale_after=600) is None


def test_heartbeat_refreshes_the_claim_and_notices_a_takeover(tmp_path):
    point_dir = tmp_path / "p"
    claim = status_lib.try_claim(point_dir, stale_after=60)
    running = status_lib.running_record(claim, 1)
    old = time.time() - 30
    os.utime(claim.path, (old, old))
    with status_lib.Heartbeat(claim, running, every=0.05):
        deadline = time.time() + 10
        while os.stat(claim.path).st_mtime < old + 1 and time.time() < deadline:
            time.sleep(0.05)
    assert os.stat(claim.path).st_mtime > old + 1  # refreshed
    assert status_lib.read_status(point_dir)["heartbeat"] >= running["heartbeat"]
    with status_lib.Heartbeat(claim, running, every=2.0) as beat:
        os.utime(claim.path, (old - 100, old - 100))  # silent for over 60 s: another worker takes it
        assert status_lib.try_claim(point_dir, stale_after=60).number == 2
        assert beat.lost.wait(20)  # the old holder's next beat notices and stops beating
    assert not claim.held()


def test_result_summary_keeps_the_last_harness_metrics_and_steady_throughput():
    from lmjax.sweep.worker import result_summary
    from lmjax.train import RunResult

    records = [{"step": 5, "loss": 3.0, "tokens_per_sec": 10.0, "mfu": 0.01},  # includes compilation
               {"step": 10, "loss": 2.5, "tokens_per_sec": 100.0, "mfu": 0.2, "eval_loss": 2.6,
                "harness/lambada/acc": 0.1},
               {"step": 15, "loss": 2.4, "tokens_per_sec": 120.0, "mfu": 0.3},
               {"step": 20, "loss": 2.3, "tokens_per_sec": 110.0, "mfu": 0.25, "eval_loss": 2.4,
                "harness/lambada/acc": 0.2, "harness/lambada/ppl": float("nan")}]
    result = RunResult(run_dir="r", steps=20, start_step=0, train_loss=2.3, eval_loss=2.4,
                       eval_bits_per_byte=1.5, parameters=10, embedding_parameters=4,
                       non_embedding_parameters=6, tokens_seen=100, input_tokens_seen=100,
                       train_flops=1e9, wall_time=3.0, preempted=False, skipped_batches=0,
                       records=records)
    summary = result_summary(result)
    assert "records" not in summary and summary["steps"] == 20
    assert summary["tokens_per_sec"] == 110.0 and summary["mfu"] == 0.25  # medians without the first
    assert summary["eval_metrics"] == {"harness/lambada/acc": 0.2, "harness/lambada/ppl": None}


def test_tables_get_a_column_per_harness_metric(tmp_path):
    from lmjax.sweep import results
    from lmjax.sweep import status as status_lib

    for name, metrics in (("a", {"harness/lambada/acc": 0.25, "harness/lambada/perplexity": 812.5}),
                          ("b", None)):
        point = tmp_path / name
        point.mkdir()
        (point / status_lib.POINT_FILE).write_text(json.dumps({"name": name, "hash": name * 8}))
        status_lib.write_status(point, {"state": "succeeded", "result": {"eval_loss": 2.0, "eval_metrics": metrics}})
    rows = [results.point_row(tmp_path / name) for name in "ab"]
    titles = [title for title, _ in results.columns_for(rows)]
    assert titles[-3:] == ["lambada/acc", "lambada/perplexity", "error"]
    results.write_results(tmp_path, rows)
    summary = (tmp_path / "summary.md").read_text().splitlines()
    assert "| lambada/acc | lambada/perplexity | error |" in summary[2]
    assert summary[4].endswith("| 0.25 | 812.5 |  |") and summary[5].endswith("|  |  |  |")
    header = (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[-4:] == ["harness/lambada/acc", "harness/lambada/perplexity", "error", "overrides"]


# Fields that cannot change what a point trains or measures, written out here on purpose: a
# field leaves the hash only by being added both to identity.EXCLUDED and to this list.
NOT_RESULTS = {
    "name", "run_dir", "train.log_every", "train.eval_every", "train.peak_flops",
    "checkpoint.every", "checkpoint.keep", "checkpoint.keep_steps", "data.data_dir", "data.cache_dir", "data.download",
    "data.worker_count", "mesh.data", "mesh.fsdp", "mesh.tensor", "mesh.axis_rules",
    "mesh.coordinator_address", "mesh.num_processes", "mesh.process_id",
}


def _leaves(instance, prefix=""):
    """(dotted key, field, value) for every field of the config that is not itself a dataclass."""
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(value, f"{prefix}{field.name}.")
        else:
            yield f"{prefix}{field.name}", field, value


def _other_value(field, value):
    """A value of the field's type that differs from `value`."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "_other"
    if isinstance(value, (list, tuple)):
        return type(value)([*value, "other"])
    assert value is None, f"no other value for {field.name}={value!r}"
    return {"int": 3, "float": 0.5, "str": "other"}[str(field.type).split(" |")[0]]


def _with(config, key, value):
    head, _, rest = key.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: _with(getattr(config, head), rest, value)})


def test_every_field_that_changes_results_changes_the_point_hash():
    base = Config(name="x")
    leaves = list(_leaves(base))
    assert {key for key, _, _ in leaves} >= NOT_RESULTS | {"train.seed", "data.shuffle_seed", "model.d_model"}
    assert set(identity.EXCLUDED) == NOT_RESULTS, "opting a field out of the hash must be explicit"
    unchanged = [key for key, field, value in leaves
                 if identity.config_hash(_with(base, key, _other_value(field, value))) == identity.config_hash(base)]
    assert set(unchanged) == NOT_RESULTS
