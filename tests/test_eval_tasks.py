"""The shipped task files read the shared data into the documents the published statistics
describe (no model involved)."""

import json

import pytest

pytest.importorskip("lm_eval")

from lmjax.errors import DataError  # noqa: E402
from lmjax.eval import task_data  # noqa: E402
from lmjax.eval import tasks as task_lib  # noqa: E402


def docs(name, data_dir):
    return list(task_lib.build_task(name, str(data_dir), 0).validation_docs())


def test_wikitext2_valid_is_its_60_articles(data_dir):
    pages = docs("wikitext2", data_dir)
    assert len(pages) == 60  # WikiText-2: 600 / 60 / 60 articles (Merity et al. 2016)
    assert pages[0]["page"].startswith(" = Homarus gammarus = \n")


def test_ptb_word_count_is_the_published_one(data_dir):
    assert sum(doc["words"] for doc in docs("ptb", data_dir)) == 73760  # one <eos> per line


def test_byte_and_character_tasks_cover_their_files_exactly(data_dir):
    assert sum(doc["bytes"] for doc in docs("enwik8", data_dir)) == 4154064
    assert sum(doc["chars"] for doc in docs("text8", data_dir)) == 3010294


@pytest.mark.parametrize("name,count,choices", [("cb", 56, 3), ("copa", 100, 2), ("rte", 277, 2),
                                                ("wsc", 104, 2)])
def test_superglue_labels_become_indices_of_the_harness_choices(data_dir, name, count, choices):
    rows = docs(name, data_dir)
    assert len(rows) == count
    assert {row["label"] for row in rows} == set(range(choices))


def test_lambada_reads_the_plain_text_and_the_openai_jsonl_alike(data_dir, tmp_path):
    plain = docs("lambada", data_dir)
    assert len(plain) == 4869
    (tmp_path / "lambada.jsonl").write_text("".join(json.dumps({"text": d["text"]}) + "\n" for d in plain[:3]))
    as_jsonl = task_data.lambada(str(tmp_path), "lambada.jsonl")["validation"]
    assert [d["text"] for d in as_jsonl] == [d["text"] for d in plain[:3]]
    (tmp_path / "bad.jsonl").write_text('{"text": "a b"}\n{"passage": "c d"}\n')
    with pytest.raises(DataError, match="bad.jsonl line 2"):
        task_data.lambada(str(tmp_path), "bad.jsonl")
