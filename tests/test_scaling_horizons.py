"""Approach 1 from real horizons (issue 22, item 2): with cooldown branches in a sweep, each
model size's curve is the final losses of its runs (branches and other budgets), each at the
end of its own decay, not the intermediate evaluations of one run."""

import numpy as np
import pytest

from lmjax.scaling.fits import optimal_exponents
from lmjax.scaling.frontier import fit_envelope
from lmjax.scaling.sweep_fit import horizon_curves

LAW = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def law_loss(n, d):
    return LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]


def rows_at_horizons(sizes, horizons_per_size):
    """Per size a parent at the longest horizon and branches at the shorter ones."""
    rows = []
    for n in sizes:
        for k, d in enumerate(horizons_per_size * n):
            branch = None if k == len(horizons_per_size) - 1 else {"parent": f"n={n:.0f}-p", "step": k}
            rows.append({"name": f"n={n:.0f},{k}", "dir": f"n={n:.0f}-{k}", "parameters": n, "tokens": d,
                         "eval_loss": law_loss(n, d), "branch": branch})
    return rows


def test_each_size_is_one_curve_of_its_final_losses():
    rows = rows_at_horizons([1e6, 2e6], np.array([10.0, 20.0, 40.0]))
    curves = horizon_curves(rows[::-1])  # any order in, shortest horizon first out
    assert [c["N"] for c in curves] == [2e6, 1e6]
    np.testing.assert_allclose(curves[1]["C"], [6 * 1e6 * 1e7, 6 * 1e6 * 2e7, 6 * 1e6 * 4e7])
    np.testing.assert_allclose(curves[1]["L"], [law_loss(1e6, d) for d in (1e7, 2e7, 4e7)])


def test_without_branches_there_are_no_horizon_curves():
    rows = rows_at_horizons([1e6], np.array([10.0, 20.0, 40.0]))
    assert horizon_curves([{**row, "branch": None} for row in rows]) == []


def test_approach_1_on_horizons_recovers_the_laws_allocation_exponent():
    sizes = np.logspace(6, 9, 13)
    rows = rows_at_horizons(sizes, np.logspace(0, 3, 16))  # 1 to 1000 tokens per parameter
    fit = fit_envelope(horizon_curves(rows), n_bootstrap=50)
    a, _ = optimal_exponents(LAW["alpha"], LAW["beta"])  # 0.5126
    assert fit["N_opt"]["exponent"] == pytest.approx(a, abs=0.05)
