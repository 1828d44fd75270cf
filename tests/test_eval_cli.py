"""`lmjax eval` end to end on stories260K, and its one-line errors on bad input."""

import json

import pytest

pytest.importorskip("lm_eval")

from lmjax import cli  # noqa: E402
from lmjax.eval import tasks as task_lib  # noqa: E402


@pytest.fixture(scope="module")
def stories_args(data_dir):
    return ["--checkpoint", str(data_dir / "stories260K" / "stories260K.bin"),
            "--tokenizer", str(data_dir / "stories260K" / "tok512.model"), "--data-dir", str(data_dir)]


def one_line_error(capsys, argv, *needles):
    code = cli.main(["eval", *argv])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    # Progress bars of the harness may come before it; the error itself is one line.
    line = err.strip().splitlines()[-1]
    assert err.count("error:") == 1 and line.startswith("lmjax eval: error: "), err
    for needle in needles:
        assert needle in line
    return line


def test_eval_prints_the_gpt2_table_and_writes_eval_json(stories_args, tmp_path, capsys):
    output = tmp_path / "eval.json"
    code = cli.main(["eval", *stories_args, "--tasks", "lambada,lambada_final_token,superglue",
                     "--limit", "3", "--output", str(output), "--write-prompts"])
    out, _ = capsys.readouterr()
    assert code == 0
    header = out.splitlines()[0]
    for column in ("LAMBADA last-word (PPL)", "LAMBADA (ACC)", "CBT-CN (ACC)", "WikiText2 (PPL)", "enwik8 (BPB)",
                   "text8 (BPC)", "1BW (PPL)", "LAMBADA word (ACC)", "COPA (ACC)", "WSC (ACC)"):
        assert column in header
    assert "| GPT-2 117M (published) | 35.13 | 45.99 |" in out
    assert "stories260K" in out
    saved = json.loads(output.read_text())
    assert set(saved["tasks"]) == {"lambada", "lambada_final_token", *task_lib.SUPERGLUE}
    assert saved["tasks"]["boolq"]["n/a"].startswith("no data file")  # not in the shared data
    copa = saved["tasks"]["copa"]
    assert copa["examples"]["effective"] == 3 and copa["config"]["task"] == "copa"
    assert copa["prompts"][0]["arguments"]  # --write-prompts: the exact (context, continuation)
    assert saved["harness"]["version"] and saved["model"]["parameters"] == 260032


def test_unknown_task_lists_the_known_ones(stories_args, capsys, monkeypatch):
    monkeypatch.setattr(task_lib, "harness_task_names", lambda names: {"hellaswag"})
    one_line_error(capsys, [*stories_args, "--tasks", "lambada,nonsense"], "unknown task 'nonsense'",
                   "wikitext2", "superglue")


def test_a_data_file_in_the_wrong_format_names_the_line(stories_args, tmp_path, capsys):
    (tmp_path / "superglue" / "CB").mkdir(parents=True)
    good = '{"premise": "a", "hypothesis": "b", "label": "neutral"}'
    (tmp_path / "superglue" / "CB" / "val.jsonl").write_text(f"{good}\n{{not json\n")
    args = [a if a != stories_args[-1] else str(tmp_path) for a in stories_args]
    one_line_error(capsys, [*args, "--tasks", "cb"], "val.jsonl line 2")


def test_a_prompt_longer_than_the_context_is_refused(stories_args, capsys):
    one_line_error(capsys, [*stories_args, "--tasks", "copa", "--shots", "60", "--limit", "1"],
                   "does not fit the model's context of 512", "--shots")


def test_more_shots_than_documents_is_refused(stories_args, capsys):
    one_line_error(capsys, [*stories_args, "--tasks", "cb", "--shots", "80"], "--shots=80", "only 56")


def test_a_checkpoint_without_config_and_a_missing_tokenizer(tmp_path, data_dir, capsys):
    one_line_error(capsys, ["--checkpoint", str(tmp_path), "--tasks", "lambada"], "lacks config.yaml")
    one_line_error(capsys, ["--checkpoint", str(data_dir / "stories260K" / "stories260K.bin"),
                            "--tasks", "lambada"], "--tokenizer")


def test_without_the_harness_the_fix_is_named(stories_args, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    one_line_error(capsys, [*stories_args, "--tasks", "lambada"], "pip install lmjax[eval]")
