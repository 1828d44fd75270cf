"""`lmjax scaling fit` on a sweep directory built from a known Chinchilla law: every approach
recovers the law's compute-optimal exponent, fit.json and the PNG plots are written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmjax import cli
from lmjax.scaling.fits import compute_optimal, optimal_exponents

LAW = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def law_loss(n, d):
    return LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]


def write_point(root, name, n, budget, rng):
    """A point trained to `budget` = 6·N·D, with its evaluation curve along the way."""
    tokens = budget / (6 * n)
    point_dir = root / name
    point_dir.mkdir()
    seen = tokens * np.linspace(0.02, 1.0, 40)
    records = [{"step": i + 1, "tokens_seen": float(t),
                "eval_loss": float(law_loss(n, t) * np.exp(rng.normal(0, 0.001)))}
               for i, t in enumerate(seen)]
    (point_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return {"name": name, "dir": name, "status": "succeeded", "parameters": n,
            "non_embedding_parameters": 0.9 * n, "tokens": tokens, "train_flops": budget,
            "eval_loss": records[-1]["eval_loss"]}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    rows = []
    for budget in np.logspace(17, 20, 4):
        center = compute_optimal(budget, LAW)["N"]
        for i, n in enumerate(center * np.logspace(-0.8, 0.8, 7)):
            rows.append(write_point(root, f"C{budget:.0e}-n{i}", float(n), float(budget), rng))
    rows.append({"name": "broken", "dir": "broken", "status": "failed", "error": "boom"})
    (root / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_scaling_fit_recovers_the_law_and_writes_plots(sweep_dir, capsys):
    assert cli.main(["scaling", "fit", str(sweep_dir), "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    fits = json.loads((sweep_dir / "fit.json").read_text())
    expected_a, _ = optimal_exponents(LAW["alpha"], LAW["beta"])
    assert fits["n_points"] == 28
    assert fits["chinchilla_2_isoflop"]["N_opt"]["exponent"] == pytest.approx(expected_a, abs=0.02)
    assert fits["chinchilla_1_envelope"]["N_opt"]["exponent"] == pytest.approx(expected_a, abs=0.06)
    assert fits["chinchilla_3_parametric"]["a"] == pytest.approx(expected_a, abs=0.03)
    assert fits["loss_vs_compute"]["b"] > 0
    for name in ("loss_vs_compute.png", "isoflop.png", "optimal_allocation.png"):
        assert (sweep_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name in out


def test_a_directory_without_results_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["scaling", "fit", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has no results.jsonl" in err and err.count("\n") == 1
