"""CBT in the official 21-line question format, built here from the CBT books (the shared
data has the books, not the question files), scored through the harness; the accuracy equals
picking, per question, the candidate whose completed sentence the model finds likeliest."""

import numpy as np
import pytest

pytest.importorskip("lm_eval")

from lmjax import eval as lmeval  # noqa: E402
from lmjax.eval import LmjaxLM, task_data  # noqa: E402
from lmjax.runs import open_run  # noqa: E402

STOPWORDS = {"said", "that", "this", "with", "have", "they", "were", "there", "then", "what",
             "when", "would", "could", "will", "them", "been", "into", "your", "from", "which"}


def is_entity(word):
    return word[:1].isupper() and word.isalpha() and word.upper() != word


def is_common(word):
    return word.islower() and word.isalpha() and len(word) >= 4 and word not in STOPWORDS


def build_questions(book_lines, kind, count):
    """Official CBT layout: lines 1-20 the context sentences, line 21 `query\\tanswer\\t\\tc1|...|c10`.
    Named entities are capitalised words, common nouns long lower-case words (a stand-in for
    the original's tagger); the answer and 9 other candidates of its kind come from the context."""
    keep = is_entity if kind == "NE" else is_common
    questions, start = [], 0
    while len(questions) < count and start + 21 <= len(book_lines):
        context, query = book_lines[start:start + 20], book_lines[start + 20].split()
        seen = list(dict.fromkeys(w for line in context for w in line.split() if keep(w)))
        answers = [i for i, w in enumerate(query) if i > 0 and keep(w) and w in seen]
        start += 21
        if not answers or len(seen) < 10:
            continue
        position = answers[0]
        answer = query[position]
        candidates = sorted([answer, *[w for w in seen if w != answer][:9]])
        query[position] = "XXXXX"
        lines = [f"{i + 1} {line}" for i, line in enumerate(context)]
        lines.append(f"21 {' '.join(query)}\t{answer}\t\t{'|'.join(candidates)}")
        questions.append("\n".join(lines))
    return "\n\n".join(questions) + "\n"


@pytest.fixture(scope="module")
def cbt_dir(tmp_path_factory, data_dir):
    books = (data_dir / "cbt" / "cbt_test.txt").read_text(encoding="utf-8").splitlines()
    lines = [line for line in books if line.strip() and not line.startswith("_BOOK_TITLE_")]
    directory = tmp_path_factory.mktemp("cbt")
    (directory / "cbt").mkdir()
    for kind in ("CN", "NE"):
        (directory / "cbt" / f"cbtest_{kind}_valid_2000ex.txt").write_text(build_questions(lines, kind, 6))
    return directory


def test_cbt_accuracy_equals_the_likeliest_completed_sentence(cbt_dir, data_dir):
    run = open_run(data_dir / "stories260K" / "stories260K.bin",
                   tokenizer=data_dir / "stories260K" / "tok512.model")
    # 20 sentences exceed stories260K's 512 positions: cut from the left, as the harness does.
    result = lmeval.evaluate(LmjaxLM(run, truncate=True), ["cbt"], data_dir=str(cbt_dir), limit=2)
    for kind in ("cn", "ne"):
        docs = task_data.cbt(str(cbt_dir), f"cbt/cbtest_{kind.upper()}_valid_2000ex.txt")["validation"]
        correct = []
        for doc in list(docs)[:2]:
            context = f"{doc['context']} {doc['query_before']}".rstrip()
            continuations = [f" {c}{doc['query_after']}" for c in doc["candidates"]]
            scores = lmeval.loglikelihood(run, [context] * len(continuations), continuations)
            correct.append(int(np.argmax(scores)) == doc["label"])
        assert result["tasks"][f"cbt-{kind}"]["metrics"]["acc"] == pytest.approx(np.mean(correct))
        assert result["tasks"][f"cbt-{kind}"]["examples"]["effective"] == 2


def test_a_cbt_file_in_another_format_names_the_line(tmp_path):
    (tmp_path / "cbt.txt").write_text("1 a sentence .\n21 no tabs here\n")
    with pytest.raises(Exception, match="cbt.txt line 2"):
        task_data.cbt(str(tmp_path), "cbt.txt")
