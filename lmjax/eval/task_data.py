"""Loaders behind the task YAMLs (`custom_dataset`): local files in, harness documents out.

The harness calls `custom_dataset(**metadata, **dataset_kwargs)`; `data_dir` comes from the
task's metadata (set by `lmjax.eval.tasks` or `lm_eval --metadata '{"data_dir": ...}'`),
`file` from the YAML. Each loader returns {"validation": Dataset} with the fields the
harness's own prompts read, labels normalised (SuperGLUE copies store some as strings).
A malformed file is a one-line DataError naming the file and line.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import Any

from lmjax import metrics
from lmjax.errors import DataError

WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")
CBT_QUERY_LINE = 21


def data_file(data_dir: str | None, file: str) -> pathlib.Path:
    """`file` under `data_dir`; a one-line error when it is missing."""
    if not data_dir:
        raise DataError("no data directory: pass --data-dir DIR (or set LMJAX_DATA_DIR)")
    path = pathlib.Path(data_dir) / file
    if not path.is_file():
        raise DataError(f"{path} not found: put the task's file there or pass another --data-dir")
    return path


def read_text(path: pathlib.Path) -> str:
    """The file as UTF-8 text; other bytes are a one-line error naming the file and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path} line {line} is not UTF-8 text (byte {data[err.start]:#04x} at offset "
                        f"{err.start}): convert the file to UTF-8") from None


def _split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import datasets

    return {"validation": datasets.Dataset.from_list(rows)}


def _jsonl(path: pathlib.Path, check: Callable[[dict], Any]) -> list[Any]:
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(check(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise DataError(f"{path} line {number} is not a record of this task ({type(err).__name__}: "
                            f"{err}): give the task's jsonl file") from None
    return rows


def lambada(data_dir: str | None = None, file: str = "", **_: Any) -> dict[str, Any]:
    """LAMBADA: the OpenAI jsonl ({"text": ...} per line) or the plain text (one passage a line),
    told apart by content, not name: the jsonl saved under the plain text's name is read as
    jsonl, not scored as JSON text."""
    path = data_file(data_dir, file)
    lines = [line for line in read_text(path).splitlines() if line.strip()]
    if path.suffix == ".jsonl" or _is_json_object(lines[0] if lines else ""):
        rows = _jsonl(path, lambda record: {"text": str(record["text"])})
    else:
        rows = [{"text": line} for line in lines]
    for number, row in enumerate(rows, 1):
        if len(row["text"].split(" ")) < 2:
            raise DataError(f"{path} passage {number} has no word before its target word")
    return _split(rows)


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def wikitext(data_dir: str | None = None, file: str = "", **_: Any) -> dict[str, Any]:
    """WikiText `.tokens` (or `.raw`) as one document per article (a ` = Title = ` line starts
    one), the `page` field of the harness's `wikitext_document_level`."""
    path = data_file(data_dir, file)
    pages: list[list[str]] = []
    for line in read_text(path).splitlines(keepends=True):
        if WIKITEXT_TITLE.match(line.rstrip("\n")) or not pages:
            pages.append([])
        pages[-1].append(line)
    return _split([{"page": "".join(page)} for page in pages if "".join(page).strip()])


def line_documents(data_dir: str | None = None, file: str = "", lines_per_doc: int = 50,
                   **_: Any) -> dict[str, Any]:
    """PTB / One Billion Words: one sentence a line, `lines_per_doc` lines per document;
    `words` counts each line's words and its end of sentence (the Mikolov convention)."""
    path = data_file(data_dir, file)
    lines = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    rows = []
    for start in range(0, len(lines), lines_per_doc):
        chunk = lines[start:start + lines_per_doc]
        rows.append({"page": "\n".join(chunk), "words": sum(len(line.split()) + 1 for line in chunk)})
    return _split(rows)


def _chunks(text: str, size: int, boundary: str) -> Iterator[str]:
    start = 0
    while start < len(text):
        end = text.rfind(boundary, start + size // 2, start + size) + 1 if start + size < len(text) else 0
        end = end if end > start else min(len(text), start + size)
        yield text[start:end]
        start = end


def characters(data_dir: str | None = None, file: str = "", chars_per_doc: int = 10000,
               **_: Any) -> dict[str, Any]:
    """enwik8 / text8: the file's raw text in documents of about `chars_per_doc` characters
    (cut after a newline or space); `bytes` and `chars` are each document's own counts."""
    path = data_file(data_dir, file)
    text = path.read_bytes().decode("utf-8", errors="replace")
    boundary = "\n" if "\n" in text else " "
    rows = [{"page": chunk, "bytes": len(chunk.encode("utf-8")), "chars": len(chunk)}
            for chunk in _chunks(text, chars_per_doc, boundary)]
    return _split(rows)


def cbt(data_dir: str | None = None, file: str = "", **_: Any) -> dict[str, Any]:
    """CBT question files in the official format: lines `1 ...` to `20 ...` of context, line
    `21 query<TAB>answer<TAB><TAB>cand1|...|cand10`, a blank line between questions."""
    path = data_file(data_dir, file)
    rows, context = [], []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        index, _, body = line.partition(" ")
        if not index.isdigit():
            raise DataError(f"{path} line {number} does not start with a sentence number: not a CBT question file")
        if int(index) < CBT_QUERY_LINE:
            context.append(body)
            continue
        fields = body.split("\t")
        if len(fields) != 4 or "XXXXX" not in fields[0] or fields[1] not in fields[3].split("|"):
            raise DataError(f"{path} line {number} is not 'query<TAB>answer<TAB><TAB>candidates' "
                            "with XXXXX in the query and the answer among the candidates")
        before, after = fields[0].split("XXXXX", 1)
        candidates = fields[3].split("|")
        rows.append({"context": " ".join(context), "query_before": before.rstrip(),
                     "query_after": after, "candidates": candidates,
                     "label": candidates.index(fields[1])})
        context = []
    return _split(rows)


def _label(value: Any, names: dict[str, int]) -> int:
    """A SuperGLUE label as the harness's index: booleans, digits or names."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) or isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, str) and value.lower() in names:
        return names[value.lower()]
    raise ValueError(f"unknown label {value!r}")


def superglue(data_dir: str | None = None, file: str = "", task: str = "", **_: Any) -> dict[str, Any]:
    """A SuperGLUE `val.jsonl` with the fields of the harness's `aps/super_glue` copy."""
    path = data_file(data_dir, file)
    if task in ("multirc", "record"):
        # One record holds many questions; expanded inside _jsonl so a record of another
        # task is an error naming its line, not a KeyError.
        expand = _multirc_rows if task == "multirc" else _record_rows
        return _split([row for rows in _jsonl(path, lambda record: list(expand(record))) for row in rows])
    return _split(_jsonl(path, SUPERGLUE_ROWS[task]))


def _bool_label(record: dict) -> dict:
    return {**record, "label": _label(record["label"], {"false": 0, "true": 1})}


def _cb(record: dict) -> dict:
    names = {"entailment": 0, "contradiction": 1, "neutral": 2}
    return {"premise": record["premise"], "hypothesis": record["hypothesis"],
            "label": _label(record["label"], names)}


def _rte(record: dict) -> dict:
    names = {"entailment": 0, "not_entailment": 1}
    return {"premise": record["premise"], "hypothesis": record["hypothesis"],
            "label": _label(record["label"], names)}


def _copa(record: dict) -> dict:
    return {key: record[key] for key in ("premise", "choice1", "choice2", "question")} | {
        "label": _label(record["label"], {})}


def _wsc(record: dict) -> dict:
    target = record.get("target", record)
    return {"text": record["text"], "span1_index": int(target["span1_index"]),
            "span2_index": int(target["span2_index"]), "span1_text": target["span1_text"],
            "span2_text": target["span2_text"], "label": _label(record["label"], {"false": 0, "true": 1})}


def _wic(record: dict) -> dict:
    return {key: record[key] for key in ("word", "sentence1", "sentence2", "start1", "end1",
                                         "start2", "end2")} | {
        "label": _label(record["label"], {"false": 0, "true": 1})}


def _multirc_rows(record: dict) -> Iterator[dict]:
    passage = record["passage"]
    for question in passage["questions"]:
        for answer in question["answers"]:
            yield {"paragraph": passage["text"], "question": question["question"],
                   "answer": answer["text"], "label": _label(answer["label"], {"false": 0, "true": 1})}


def _record_rows(record: dict) -> Iterator[dict]:
    text = record["passage"]["text"]
    entities = [text[e["start"]:e["end"] + 1] for e in record["passage"]["entities"]]
    for qa in record["qas"]:
        yield {"passage": text, "query": qa["query"], "entities": entities,
               "answers": [answer["text"] for answer in qa.get("answers", [])]}


SUPERGLUE_ROWS: dict[str, Callable[[dict], dict]] = {
    "boolq": _bool_label, "cb": _cb, "copa": _copa, "rte": _rte, "wic": _wic, "wsc": _wsc,
}


def line_results(doc: dict, results: list) -> dict[str, Any]:
    """PTB / 1BW: word perplexity over the document's words (one end of sentence per line)."""
    (loglikelihood,) = results
    n_bytes = len(doc["page"].encode("utf-8"))
    return {"word_perplexity": (loglikelihood, doc["words"]), "bits_per_byte": (loglikelihood, n_bytes)}


def byte_results(doc: dict, results: list) -> dict[str, Any]:
    """enwik8: bits per byte over the raw bytes."""
    (loglikelihood,) = results
    return {"bits_per_byte": (loglikelihood, doc["bytes"])}


def character_results(doc: dict, results: list) -> dict[str, Any]:
    """text8: bits per character."""
    (loglikelihood,) = results
    return {"bits_per_character": (loglikelihood, doc["chars"])}


def bits_per_character(items: list[tuple[float, int]]) -> float:
    """The harness's aggregation for text8: the documents' summed loss over their characters."""
    loglikelihoods, weights = zip(*items)
    return metrics.bits_per_character(-sum(loglikelihoods), sum(weights))


def page(doc: dict) -> str:
    return doc["page"]


def cbt_text(doc: dict) -> str:
    return f"{doc['context']} {doc['query_before']}".rstrip()


def cbt_choices(doc: dict) -> list[str]:
    return [f" {candidate}{doc['query_after']}" for candidate in doc["candidates"]]


def arithmetic(data_dir: str | None = None, file: str = "", **_: Any) -> dict[str, Any]:
    """Arithmetic problems for the generation tasks (`arithmetic_direct`,
    `arithmetic_scratchpad`): jsonl rows {"question", "scratchpad", "answer"} (any further
    fields, e.g. "digits", are kept), as experiments/scratchpad_data.py writes them."""
    path = data_file(data_dir, file)

    def check(record: dict) -> dict:
        row = {**record, **{key: str(record[key]) for key in ("question", "scratchpad", "answer")}}
        if not row["answer"].lstrip("-").isdigit():
            raise ValueError(f"answer {row['answer']!r} is not a whole number")
        return row

    return _split(_jsonl(path, check))
