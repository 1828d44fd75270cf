"""Generation tasks: answer extraction, the majority vote (ties included), sampled paths in
eval.json, seeded determinism, and the one-line errors (issue 25, item 1).

Expected answers and scores are worked out by hand from the paths written in each test.
"""

import json

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.model import LM  # noqa: E402
from lm_eval.filters import build_filter_ensemble  # noqa: E402

from lmjax import cli  # noqa: E402
from lmjax.errors import ConfigError  # noqa: E402
from lmjax.eval import tasks as task_lib  # noqa: E402
from lmjax.eval.api import task_record  # noqa: E402
from lmjax.eval.harness import LmjaxLM  # noqa: E402
from test_eval_cli import one_line_error  # noqa: E402  (the shared one-line check of `lmjax eval` errors)

PROBLEMS = [  # question, scratchpad, answer: 57+68 = 125, 12*3 = 36, 999+1 = 1000
    {"question": "57+68", "scratchpad": "7+8+0=15 5+6+1=12", "answer": "125", "digits": 2},
    {"question": "12*3", "scratchpad": "2*3+0=6 1*3+0=3", "answer": "36", "digits": 2},
    {"question": "999+1", "scratchpad": "9+1+0=10 9+0+1=10 9+0+1=10", "answer": "1000", "digits": 3},
]


@pytest.fixture()
def arithmetic_dir(tmp_path):
    (tmp_path / "arithmetic").mkdir()
    (tmp_path / "arithmetic" / "test.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return tmp_path


def filtered(task_name, paths):
    """What each of the shipped task's filters keeps from one document's paths, through the
    harness's own filter pipeline (as its evaluator applies it)."""
    from lm_eval.api.instance import Instance

    out = {}
    for entry in task_lib.task_config(task_name, "/nonexistent")["filter_list"]:
        ensemble = build_filter_ensemble(entry["name"], [
            [f["function"], {k: v for k, v in f.items() if k != "function"}] for f in entry["filter"]])
        instance = Instance(request_type="generate_until", doc={}, arguments=("", {}), idx=0)
        instance.resps = list(paths)
        ensemble.apply([instance])
        out[entry["name"]] = instance.filtered_resps[entry["name"]]
    return out


@pytest.mark.parametrize("task_name", ["arithmetic_direct", "arithmetic_scratchpad"])
@pytest.mark.parametrize("paths,first,vote", [
    (["S: 7+8+0=15 5+6+1=12\nA: 125", "A: 124", "A: 125"], "125", "125"),
    (["A: 124", "A: 125", "A: 125"], "124", "125"),             # the vote overrules the first path
    (["A: 7", "A: 8", "A: 8", "A: 7"], "7", "7"),               # tie 2-2: the answer seen first wins
    (["A: 8", "A: 7", "A: 7", "A: 8"], "8", "8"),
    (["no answer", "no answer", "A: 3"], "[invalid]", "[invalid]"),  # unreadable paths vote too
    (["A: 12 then A: 13"], "12", "12"),                         # the first match in a path
    (["A: -5"], "-5", "-5"),
])
def test_extraction_and_the_vote_of_the_shipped_tasks(task_name, paths, first, vote):
    assert filtered(task_name, paths) == {"first": first, "vote": vote}


class ScriptedLM(LM):
    """Returns the given paths in order, one per generation request (the harness's K copies
    of a prompt come one after the other)."""

    def __init__(self, paths):
        super().__init__()
        self.paths, self.prompts = list(paths), []

    def generate_until(self, requests, disable_tqdm=False):
        self.prompts += [req.args[0] for req in requests]
        return [self.paths.pop(0) for _ in requests]

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


def scripted_eval(data_dir, paths, samples, shots=0):
    from lm_eval import evaluator

    task = task_lib.build_task("arithmetic_scratchpad", str(data_dir), shots, samples)
    model = ScriptedLM(paths)
    out = evaluator.simple_evaluate(model=model, tasks=[task], bootstrap_iters=0, log_samples=True,
                                    verbosity="ERROR", task_manager=task_lib.light_task_manager())
    return task_record(out, "arithmetic_scratchpad", with_prompts=True), model


def test_self_consistency_scores_and_records_every_path(arithmetic_dir):
    paths = ["A: 125", "A: 124", "A: 124",     # 57+68: first right, vote wrong
             "A: 35", "A: 36", "A: 36",        # 12*3: first wrong, vote right
             "A: 1000", "oops", "A: 999"]      # 999+1: 1-1-1 tie, first answer (1000) wins
    record, model = scripted_eval(arithmetic_dir, paths, samples=3)
    assert record["metrics"] == {"exact_match/first": pytest.approx(2 / 3),
                                 "exact_match/vote": pytest.approx(2 / 3)}
    assert record["examples"]["effective"] == 3
    by_question = {r["arguments"][0][0]: r for r in record["prompts"]}
    first = by_question["Q: 57+68\n"]
    assert first["paths"] == ["A: 125", "A: 124", "A: 124"]
    assert first["answers"] == ["125", "124", "124"]
    assert first["filtered"] == {"first": "125", "vote": "124"}
    assert by_question["Q: 999+1\n"]["answers"] == ["1000", "[invalid]", "999"]
    assert by_question["Q: 999+1\n"]["filtered"]["vote"] == "1000"
    assert sorted(model.prompts) == sorted(["Q: 57+68\n"] * 3 + ["Q: 12*3\n"] * 3 + ["Q: 999+1\n"] * 3)


def test_exemplars_show_the_steps_or_only_the_answer(arithmetic_dir):
    for task_name, shown in [("arithmetic_scratchpad", True), ("arithmetic_direct", False)]:
        task = task_lib.build_task(task_name, str(arithmetic_dir), 1)
        doc = task.validation_docs()[0]
        prompt = task.fewshot_context(doc, num_fewshot=1)
        example, query = prompt.split("\n\n")
        assert query == f"Q: {doc['question']}\n"
        other = next(p for p in PROBLEMS if p["question"] == example.split("\n")[0][3:])
        expected = (f"Q: {other['question']}\nS: {other['scratchpad']}\nA: {other['answer']}" if shown
                    else f"Q: {other['question']}\nA: {other['answer']}")
        assert example == expected


@pytest.fixture(scope="module")
def stories_model(data_dir):
    return LmjaxLM(str(data_dir / "stories260K" / "stories260K.bin"),
                   tokenizer=str(data_dir / "stories260K" / "tok512.model"), batch_size=4,
                   max_gen_toks=12)


def requests_for(prompts, repeats):
    from lm_eval.api.instance import Instance

    return [Instance(request_type="generate_until", doc={}, idx=0,
                     arguments=(prompt, {"until": ["\n\n"], "max_gen_toks": 12, "do_sample": False}))
            for prompt in prompts for _ in range(repeats)]


def test_sampled_paths_are_seeded_distinct_and_reproducible(stories_model):
    requests = requests_for(["Once upon a time", "The cat"], repeats=5)  # 10 rows: 3 batches of 4
    stories_model.temperature, stories_model.seed = 1.0, 0
    first = stories_model.generate_until(requests, disable_tqdm=True)
    again = stories_model.generate_until(requests, disable_tqdm=True)
    stories_model.seed = 1
    other_seed = stories_model.generate_until(requests, disable_tqdm=True)
    stories_model.temperature, stories_model.seed = 0.0, 0
    assert first == again
    assert first != other_seed
    assert len(set(first[:5])) > 1 and len(set(first[5:])) > 1  # K copies are K different paths


def test_greedy_generation_does_not_depend_on_the_batch_size(stories_model, data_dir):
    requests = requests_for(["Once upon a time", "The cat", "Lily"], repeats=2)
    one_row = LmjaxLM(stories_model.adapter.run, batch_size=1, max_gen_toks=12)
    greedy = stories_model.generate_until(requests, disable_tqdm=True)
    assert greedy == one_row.generate_until(requests, disable_tqdm=True)
    assert greedy[0] == greedy[1] and greedy[2] == greedy[3]


@pytest.fixture(scope="module")
def stories_args(data_dir):
    return ["--checkpoint", str(data_dir / "stories260K" / "stories260K.bin"),
            "--tokenizer", str(data_dir / "stories260K" / "tok512.model")]


def test_eval_records_every_sampled_path_and_repeats_them(stories_args, arithmetic_dir, tmp_path, capsys):
    outputs = []
    for name in ("a.json", "b.json"):
        output = tmp_path / name
        code = cli.main(["eval", *stories_args, "--data-dir", str(arithmetic_dir), "--tasks",
                         "arithmetic_scratchpad", "--samples", "3", "--temperature", "0.8", "--seed", "7",
                         "--output", str(output), "--write-prompts", "--no-published"])
        printed, errors = capsys.readouterr()
        assert code == 0, errors
        assert "Arith scratchpad (EM)" in printed and "Arith scratchpad vote (EM)" in printed
        outputs.append(json.loads(output.read_text()))
    first, second = (o["tasks"]["arithmetic_scratchpad"] for o in outputs)
    assert outputs[0]["generation"] == {"samples": 3, "temperature": 0.8, "seed": 7}
    assert set(first["metrics"]) == {"exact_match/first", "exact_match/vote"}
    assert len(first["prompts"]) == 3 and all(len(p["paths"]) == 3 for p in first["prompts"])
    assert [p["paths"] for p in first["prompts"]] == [p["paths"] for p in second["prompts"]]
    for record in first["prompts"]:  # stories260K writes stories, not "A: <number>"
        assert len(record["answers"]) == 3 and record["filtered"]["first"] == record["answers"][0]


@pytest.mark.parametrize("extra,needles", [
    (["--samples", "5"], ["--samples=5", "--temperature > 0"]),
    (["--samples", "5", "--temperature", "0"], ["--samples=5", "--temperature > 0"]),
    (["--samples", "0", "--temperature", "0.7"], ["--samples=0", ">= 1"]),
    (["--temperature", "-1"], ["--temperature=-1.0", ">= 0"]),
])
def test_self_consistency_options_are_checked_first(stories_args, arithmetic_dir, capsys, extra, needles):
    one_line_error(capsys, [*stories_args, "--data-dir", str(arithmetic_dir), "--tasks",
                            "arithmetic_scratchpad", *extra], *needles)


def test_an_extraction_regex_that_does_not_compile_names_the_file_and_filter(tmp_path, monkeypatch):
    broken = tmp_path / "arithmetic_broken.yaml"
    text = task_lib.local_tasks()["arithmetic_scratchpad"].read_text()
    broken.write_text(text.replace("task: arithmetic_scratchpad", "task: arithmetic_broken").replace(
        'regex_pattern: "A: (-?[0-9]+)"\n      - function: majority_vote',
        'regex_pattern: "A: (-?[0-9]+"\n      - function: majority_vote'))
    monkeypatch.setattr(task_lib, "local_tasks", lambda: {"arithmetic_broken": broken})
    with pytest.raises(ConfigError) as err:
        task_lib.build_task("arithmetic_broken", str(tmp_path), 0)
    message = str(err.value)
    assert str(broken) in message and "'vote'" in message and "A: (-?[0-9]+" in message
    assert "\n" not in message



@pytest.mark.e2e
def test_t5_samples_reproducible_paths_through_the_same_path(tmp_path_factory):
    """A T5 run (encoder input, sampled decoder) gives K distinct paths, the same twice."""
    run_dir = tmp_path_factory.mktemp("t5_tiny")
    assert cli.main(["train", "--config", "t5_tiny", f"run_dir={run_dir}", "train.steps=2",
                     "checkpoint.every=2", "train.eval_every=1000", "train.eval_batches=1",
                     "train.peak_flops=1e12"]) == 0
    model = LmjaxLM(str(run_dir), batch_size=4, max_gen_toks=8, temperature=1.0, seed=3)
    requests = requests_for(["To be, or not to be", "ROMEO:"], repeats=3)
    first = model.generate_until(requests, disable_tqdm=True)
    assert first == model.generate_until(requests, disable_tqdm=True)
    assert len(set(first[:3])) > 1 and len(set(first[3:])) > 1
