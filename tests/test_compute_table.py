"""`lmjax flops` reproduces the GPT-3 paper's compute table (Brown et al. 2020, Table D.1)."""

from __future__ import annotations

import json

import pytest

from lmjax import cli
from lmjax.scaling.compute import PF_DAY, TABLE_D1, reproduce_table_d1

# Rows whose published N differs from the released model's real count by more than 3%:
# T5-Large is 738M and T5-3B 2.85B parameters (the table rounds up to 770M and 3B), and
# BERT-Large is 335M (Devlin et al. say 340M; the table 355M).
COUNTED_OFF_BY_MORE_THAN_3_PERCENT = {"T5-Large", "T5-3B", "BERT-Large"}


@pytest.fixture(scope="module")
def rows():
    return reproduce_table_d1()


def test_all_seventeen_rows_within_three_percent(rows):
    assert len(rows) == len(TABLE_D1) == 17
    for row in rows:
        assert row["flops"] == pytest.approx(row["published_flops"], rel=0.03), row["model"]
        assert row["pf_days"] == pytest.approx(row["published_pf_days"], rel=0.03), row["model"]


def test_counted_parameters_match_the_table_where_the_table_is_right(rows):
    for row in rows:
        off = abs(row["counted_params"] / row["published_params"] - 1)
        if row["model"] in COUNTED_OFF_BY_MORE_THAN_3_PERCENT:
            assert 0.03 < off < 0.06, row["model"]
        else:
            assert off < 0.03, row["model"]
            assert row["counted_flops"] == pytest.approx(row["published_flops"], rel=0.03)


def test_examples_from_the_issue(rows):
    by_model = {row["model"]: row for row in rows}
    assert by_model["GPT-3 Small"]["flops"] == pytest.approx(2.25e20, rel=0.005)
    assert by_model["GPT-3 Small"]["pf_days"] == pytest.approx(2.60, rel=0.005)
    assert by_model["GPT-3 175B"]["pf_days"] == pytest.approx(3.64e3, rel=0.005)
    assert by_model["T5-11B"]["pf_days"] == pytest.approx(382, rel=0.005)
    assert PF_DAY == 8.64e19


def test_exact_count_adds_attention_at_long_context_for_gpt3_small(rows):
    """6N leaves out attention: 12·L·d·T / (6N) = 12·12·768·2048 / (6·125M) ≈ 30% at T=2048."""
    small = next(row for row in rows if row["model"] == "GPT-3 Small")
    assert small["exact_vs_convention"] == pytest.approx(0.30, abs=0.03)


def test_cli_json_for_gpt3_175b(capsys):
    assert cli.main(["flops", "--preset", "gpt3-175b", "--tokens", "300e9", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"params", "flops_per_token", "total_flops", "pf_days", "convention"} <= set(result)
    assert result["total_flops"] == pytest.approx(3.14e23, rel=0.01)
    assert result["pf_days"] == pytest.approx(3.64e3, rel=0.01)


def test_cli_refuses_missing_tokens_in_one_line(capsys):
    assert cli.main(["flops", "--preset", "gpt3-small"]) == 2
    err = capsys.readouterr().err
    assert "--tokens must be a positive count" in err and err.count("\n") == 1
