"""`lmjax eval` on bad or unusual input (issue 23): one-line errors before work starts, and
numbers that are never printed where they mean something else."""

import json
import os
import pathlib
import time

import pytest

pytest.importorskip("lm_eval")

from lmjax import cli  # noqa: E402
from lmjax.eval import task_data  # noqa: E402
from lmjax.eval import tasks as task_lib  # noqa: E402

LAMBADA_FILE = "lambada/lambada_development_plain_text.txt"


@pytest.fixture(scope="module")
def stories(data_dir):
    return ["--checkpoint", str(data_dir / "stories260K" / "stories260K.bin"),
            "--tokenizer", str(data_dir / "stories260K" / "tok512.model")]


def eval_error(capsys, argv):
    """The one error line of `lmjax eval argv` (exit code 2, no traceback)."""
    code = cli.main(["eval", *argv])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in err and err.count("error:") == 1, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("lmjax eval: error: "), err
    return line


def write(path: pathlib.Path, content: str | bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def long_lambada_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """One passage of 700 words: more tokens than stories260K's context of 512."""
    passage = " ".join(["the little dog ran home"] * 140)
    write(tmp_path / LAMBADA_FILE, passage + "\n")
    return tmp_path


def test_final_token_lambada_refuses_an_over_long_prompt_without_truncate(stories, tmp_path, capsys):
    data = long_lambada_dir(tmp_path)
    line = eval_error(capsys, [*stories, "--data-dir", str(data), "--tasks", "lambada_final_token",
                               "--output", str(tmp_path / "eval.json")])
    assert "does not fit the model's context of 512" in line and "--truncate" in line
    assert "--shots" not in line  # shots is 0: fewer shots cannot help


def test_truncate_cuts_final_token_prompts_and_eval_json_records_it(stories, tmp_path, capsys):
    data = long_lambada_dir(tmp_path)
    output = tmp_path / "eval.json"
    code = cli.main(["eval", *stories, "--data-dir", str(data), "--tasks", "lambada_final_token",
                     "--truncate", "--output", str(output)])
    capsys.readouterr()
    assert code == 0
    saved = json.loads(output.read_text())
    assert saved["truncate"] is True
    assert saved["tasks"]["lambada_final_token"]["examples"]["effective"] == 1


def test_a_too_long_prompt_at_zero_shots_does_not_suggest_fewer_shots(stories, tmp_path, capsys):
    data = long_lambada_dir(tmp_path)
    line = eval_error(capsys, [*stories, "--data-dir", str(data), "--tasks", "lambada",
                               "--output", str(tmp_path / "eval.json")])
    assert "does not fit the model's context of 512" in line and "--shots" not in line


def test_final_token_lambada_after_a_few_shot_task_does_not_blame_the_shots(stories, data_dir, tmp_path,
                                                                           capsys):
    data = long_lambada_dir(tmp_path)
    (data / "superglue" / "CB").mkdir(parents=True)
    (data / "superglue" / "CB" / "val.jsonl").symlink_to(data_dir / "superglue" / "CB" / "val.jsonl")
    line = eval_error(capsys, [*stories, "--data-dir", str(data), "--tasks", "cb,lambada_final_token",
                               "--shots", "1", "--limit", "2", "--output", str(tmp_path / "eval.json")])
    assert "does not fit the model's context of 512" in line and "--shots" not in line


def test_the_ngram_path_is_stored_absolute(tmp_path, monkeypatch):
    from lmjax.eval import LmjaxLM
    from lmjax.ngram import NGramLM

    NGramLM(2, smoothing="kneser_ney").fit([["a", "b", "a"]]).save(str(tmp_path / "model.json"))
    monkeypatch.chdir(tmp_path)
    assert LmjaxLM("model.json").adapter.identity["path"] == str(tmp_path / "model.json")


def test_multirc_with_records_of_another_task_names_the_line(stories, tmp_path, capsys):
    cb_record = '{"premise": "a", "hypothesis": "b", "label": "neutral"}\n'
    write(tmp_path / "superglue" / "MultiRC" / "val.jsonl", cb_record)
    line = eval_error(capsys, [*stories, "--data-dir", str(tmp_path), "--tasks", "multirc",
                               "--output", str(tmp_path / "eval.json")])
    assert "MultiRC/val.jsonl line 1 is not a record of this task" in line and "'passage'" in line


def test_a_wikitext_file_that_is_not_utf8_names_the_line(stories, tmp_path, capsys):
    write(tmp_path / "wikitext2" / "wiki.valid.tokens", b" = Title = \n caf\xe9 au lait \n")
    line = eval_error(capsys, [*stories, "--data-dir", str(tmp_path), "--tasks", "wikitext2",
                               "--output", str(tmp_path / "eval.json")])
    assert "wiki.valid.tokens line 2 is not UTF-8" in line


@pytest.mark.parametrize("size", ["0", "-3"])
def test_a_batch_size_below_one_is_refused(stories, data_dir, tmp_path, capsys, size):
    line = eval_error(capsys, [*stories, "--data-dir", str(data_dir), "--tasks", "lambada",
                               "--batch-size", size, "--output", str(tmp_path / "eval.json")])
    assert f"--batch-size={size}" in line


def test_the_lambada_jsonl_under_the_plain_text_name_is_read_as_jsonl(tmp_path):
    passages = ["the cat sat on the mat", "she opened the door"]
    write(tmp_path / LAMBADA_FILE, "".join(json.dumps({"text": text}) + "\n" for text in passages))
    docs = task_data.lambada(data_dir=str(tmp_path), file=LAMBADA_FILE)["validation"]
    assert [doc["text"] for doc in docs] == passages


def test_plain_text_lambada_is_still_read_line_by_line(tmp_path):
    write(tmp_path / LAMBADA_FILE, "{curly} braces open this passage\nsecond passage here\n")
    docs = task_data.lambada(data_dir=str(tmp_path), file=LAMBADA_FILE)["validation"]
    assert [doc["text"] for doc in docs] == ["{curly} braces open this passage", "second passage here"]


def test_harness_names_without_local_data_are_refused_at_once(stories, tmp_path, capsys, monkeypatch):
    import lm_eval.tasks

    def no_hub(*args, **kwargs):
        raise AssertionError("the harness's task index (and its Hub download) must not be reached")

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", no_hub)
    for name, ours in (("lambada_openai", "lambada"), ("wikitext", "wikitext2")):
        start = time.monotonic()
        line = eval_error(capsys, [*stories, "--data-dir", str(tmp_path), "--tasks", name,
                                   "--output", str(tmp_path / "eval.json")])
        assert f"task {name} runs as lmjax's local task {ours}" in line and "does not exist" in line
        assert time.monotonic() - start < 30


def test_harness_names_run_as_the_local_tasks_where_the_data_is(stories, data_dir, tmp_path, capsys):
    output = tmp_path / "eval.json"
    code = cli.main(["eval", *stories, "--data-dir", str(data_dir), "--tasks", "lambada_openai",
                     "--limit", "2", "--output", str(output)])
    capsys.readouterr()
    assert code == 0
    saved = json.loads(output.read_text())
    assert saved["renamed_tasks"] == {"lambada_openai": "lambada"}
    assert saved["tasks"]["lambada"]["examples"]["effective"] == 2
    assert task_lib.expand("wikitext,lambada_openai", set()) == ["wikitext2", "lambada"]


def test_output_under_a_regular_file_is_refused_before_any_model_loads(tmp_path, capsys):
    write(tmp_path / "notes.txt", "mine\n")
    # The checkpoint does not exist: an --output error proves the check ran first.
    line = eval_error(capsys, ["--checkpoint", str(tmp_path / "missing"), "--tasks", "lambada",
                               "--output", str(tmp_path / "notes.txt" / "eval.json")])
    assert "--output" in line and "notes.txt, which is a file" in line
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_output_that_is_a_directory_is_refused(tmp_path, capsys):
    line = eval_error(capsys, ["--checkpoint", str(tmp_path / "missing"), "--tasks", "lambada",
                               "--output", str(tmp_path)])
    assert "is a directory" in line


def test_output_on_a_read_only_location_is_refused(tmp_path, capsys, monkeypatch):
    # Simulated: tests run as root, for whom chmod does not make a directory read-only, so
    # os.access (which reports a read-only file system as EROFS) answers "not writable".
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if pathlib.Path(path) == tmp_path
                        else real_access(path, mode, **kw))
    line = eval_error(capsys, ["--checkpoint", str(tmp_path / "missing"), "--tasks", "lambada",
                               "--output", str(tmp_path / "out" / "eval.json")])
    assert f"{tmp_path} is not writable" in line
