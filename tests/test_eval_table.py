"""The printed table: BERT's pseudo-perplexity is n/a with its reason, never a number in the
LAMBADA perplexity column beside GPT-2's; that column says it is the last word's perplexity."""

import pytest

pytest.importorskip("lm_eval")

from lmjax.eval.adapters import CausalAdapter, PseudoLogLikelihoodAdapter  # noqa: E402
from lmjax.eval.api import without_unsupported_metrics  # noqa: E402
from lmjax.eval.table import render  # noqa: E402


def lambada_evaluation(adapter_class, arch):
    """eval.json as `evaluate` writes it for one lambada result of a model of `arch`; the
    adapter is made without a model, since only its verdict on metrics is used."""
    record = {"metrics": {"perplexity": 812.25, "acc": 0.4}, "examples": {}, "config": {}}
    record = without_unsupported_metrics(record, object.__new__(adapter_class))
    return {"model": {"name": f"tiny-{arch}", "arch": arch, "parameters": 10}, "tasks": {"lambada": record}}


def row_cells(table, label):
    row = next(line for line in table.splitlines() if line.startswith(f"| {label}"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_bert_lambada_perplexity_prints_na_with_the_reason():
    bert = lambada_evaluation(PseudoLogLikelihoodAdapter, "bert")
    table = render([bert])
    header = row_cells(table, "Model")
    cells = row_cells(table, "tiny-bert")
    column = header.index("LAMBADA last-word (PPL)")
    assert cells[column] == "n/a"
    assert "812" not in table
    assert cells[header.index("LAMBADA word (ACC)")] == "40.00"  # mask filling is an accuracy
    assert "on lambada perplexity: BERT's pseudo-log-likelihood is not a probability" in table
    assert bert["tasks"]["lambada"]["metrics"]["pseudo_perplexity"] == 812.25


def test_gpt_lambada_perplexity_stays_a_number():
    gpt = lambada_evaluation(CausalAdapter, "gpt")
    table = render([gpt], published=False)
    header, cells = row_cells(table, "Model"), row_cells(table, "tiny-gpt")
    assert cells[header.index("LAMBADA last-word (PPL)")] == "812.25"
    assert "n/a" not in table
