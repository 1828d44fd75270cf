"""The GPT-2 paper's zero-shot table (Radford et al. 2019, Table 3) with our rows beside it.

One column per task with its metric in the header; accuracies in percent as the paper
prints them. The published rows are reference numbers on the full test sets; ours are on
whatever `--limit` and data the run used (eval.json says which).
"""

from __future__ import annotations

import math
from typing import Any

# (header, task, metric, scale): scale 100 prints an accuracy in percent.
GPT2_COLUMNS = [
    ("LAMBADA last-word (PPL)", "lambada", "perplexity", 1),
    ("LAMBADA (ACC)", "lambada_final_token", "acc", 100),
    ("CBT-CN (ACC)", "cbt-cn", "acc", 100),
    ("CBT-NE (ACC)", "cbt-ne", "acc", 100),
    ("WikiText2 (PPL)", "wikitext2", "word_perplexity", 1),
    ("PTB (PPL)", "ptb", "word_perplexity", 1),
    ("enwik8 (BPB)", "enwik8", "bits_per_byte", 1),
    ("text8 (BPC)", "text8", "bits_per_character", 1),
    ("WikiText103 (PPL)", "wikitext103", "word_perplexity", 1),
    ("1BW (PPL)", "1bw", "word_perplexity", 1),
]
# Columns beyond the paper's: lambada_openai's last-word accuracy, SuperGLUE, arithmetic.
EXTRA_COLUMNS = [
    ("LAMBADA word (ACC)", "lambada", "acc", 100),
    ("BoolQ (ACC)", "boolq", "acc", 100),
    ("CB (ACC)", "cb", "acc", 100),
    ("CB (F1)", "cb", "f1", 100),
    ("COPA (ACC)", "copa", "acc", 100),
    ("MultiRC (ACC)", "multirc", "acc", 100),
    ("ReCoRD (F1)", "record", "f1", 100),
    ("RTE (ACC)", "rte", "acc", 100),
    ("WiC (ACC)", "wic", "acc", 100),
    ("WSC (ACC)", "wsc", "acc", 100),
    # Generation tasks: the first path's answer, and the majority over --samples paths.
    ("Arith direct (EM)", "arithmetic_direct", "exact_match/first", 100),
    ("Arith direct vote (EM)", "arithmetic_direct", "exact_match/vote", 100),
    ("Arith scratchpad (EM)", "arithmetic_scratchpad", "exact_match/first", 100),
    ("Arith scratchpad vote (EM)", "arithmetic_scratchpad", "exact_match/vote", 100),
]
# Radford et al. (2019), "Language Models are Unsupervised Multitask Learners", Table 3,
# in GPT2_COLUMNS order.
GPT2_PUBLISHED = {
    "GPT-2 117M (published)": [35.13, 45.99, 87.65, 83.4, 29.41, 65.85, 1.16, 1.17, 37.50, 75.20],
    "GPT-2 345M (published)": [15.60, 55.48, 92.35, 87.1, 22.76, 47.33, 1.01, 1.06, 26.37, 55.72],
    "GPT-2 762M (published)": [10.87, 60.12, 93.45, 88.0, 19.93, 40.31, 0.97, 1.02, 22.05, 44.575],
    "GPT-2 1542M (published)": [8.63, 63.24, 93.30, 89.05, 18.34, 35.76, 0.93, 0.98, 17.48, 42.16],
}


def columns_for(evaluations: list[dict[str, Any]]) -> list[tuple[str, str, str, int]]:
    """The paper's ten columns, then the extra ones some evaluation has a result for."""
    ran = {task for evaluation in evaluations for task in evaluation["tasks"]}
    return GPT2_COLUMNS + [column for column in EXTRA_COLUMNS if column[1] in ran]


def cell(evaluation: dict[str, Any], task: str, metric: str, scale: int) -> str:
    """The number, "n/a" (cannot be done by this model), or "-" (not run)."""
    result = evaluation["tasks"].get(task)
    if result is None:
        return "-"
    if "n/a" in result or metric in result.get("metrics n/a", {}):
        return "n/a"
    value = result["metrics"].get(metric)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-" if value is None else str(value)
    value *= scale
    return f"{value:.2f}" if math.isfinite(value) and abs(value) < 1e6 else f"{value:.3g}"


def model_label(evaluation: dict[str, Any]) -> str:
    identity = evaluation["model"]
    if identity.get("source") == "ngram":
        return f"{identity['order']}-gram {identity['smoothing']} ({identity['unit']})"
    name = identity.get("name") or identity.get("path", "model")
    return f"{name} ({identity.get('arch')}, {identity.get('parameters', 0):,} params)"


def render(evaluations: list[dict[str, Any]], published: bool = True) -> str:
    """The table as Markdown: published GPT-2 rows, then one row per evaluation; below it the
    reasons for every n/a."""
    columns = columns_for(evaluations)
    header = ["Model", *(title for title, *_ in columns)]
    rows = []
    if published:
        for label, values in GPT2_PUBLISHED.items():
            rows.append([label, *(f"{v:g}" for v in values), *("-" for _ in columns[len(values):])])
    for evaluation in evaluations:
        rows.append([model_label(evaluation), *(cell(evaluation, *column[1:]) for column in columns)])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    for evaluation in evaluations:
        for task, result in evaluation["tasks"].items():
            if "n/a" in result:
                lines.append(f"\nn/a for {model_label(evaluation)} on {task}: {result['n/a']}")
            for metric, reason in result.get("metrics n/a", {}).items():
                lines.append(f"\nn/a for {model_label(evaluation)} on {task} {metric}: {reason}")
    return "\n".join(lines)
