"""Fits refuse what they cannot fit, in one line (issue 22, item 6): fewer runs than
parameters, inputs that never change, compute that is not a finite positive number; and the
IsoFLOP plot draws exactly the runs each parabola was fitted to."""

import math

import numpy as np
import pytest
from etils import epath

from lmjax.errors import DataError
from lmjax.scaling import plots
from lmjax.scaling.fits import compute_optimal, fit_chinchilla, fit_kaplan_n, fit_power_law
from lmjax.scaling.frontier import fit_isoflop

LAW = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def one_line(call, match):
    with pytest.raises(DataError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_chinchilla_refuses_fewer_runs_than_its_five_parameters():
    n, d = [1e7, 1e8, 1e9, 3e9], [1e10, 1e9, 1e11, 3e10]
    loss = [LAW["E"] + LAW["A"] / a ** LAW["alpha"] + LAW["B"] / b ** LAW["beta"] for a, b in zip(n, d)]
    one_line(lambda: fit_chinchilla(n[:3], d[:3], loss[:3], n_bootstrap=2), "N has 3 points; a fit needs at least 5")
    one_line(lambda: fit_chinchilla(n, d, loss, n_bootstrap=2), "N has 4 points; a fit needs at least 5")


@pytest.mark.parametrize("call, match", [
    (lambda: fit_power_law([5, 5, 5, 5], [1, 2, 3, 4]), "x is 5 at all 4 points"),
    (lambda: fit_power_law([1, 2, 3, 4], [2, 2, 2, 2]), "y is 2 at all 4 points"),
    (lambda: fit_kaplan_n([1e5, 1e6, 1e7], [3.0, 3.0, 3.0]), "y is 3 at all 3 points"),
    (lambda: fit_chinchilla([1e8] * 6, [1e9, 2e9, 4e9, 8e9, 1.6e10, 3.2e10], [3, 2.9, 2.8, 2.7, 2.6, 2.5],
                            n_bootstrap=2), "N is 1e\\+08 at all 6 points"),
    (lambda: fit_chinchilla([1, 2, 3, 4, 5, 6], [1e9] * 6, [2.5] * 6, n_bootstrap=2), "D is 1e\\+09 at all 6 points"),
])
def test_inputs_that_never_change_are_refused(call, match):
    one_line(call, match)


@pytest.mark.parametrize("compute", [0.0, -1e20, math.nan, math.inf, [1e20, math.nan]])
def test_compute_optimal_refuses_compute_that_is_not_finite_and_positive(compute):
    one_line(lambda: compute_optimal(compute, LAW), "is not a finite positive number of FLOP")


def test_compute_optimal_still_takes_a_number_and_an_array():
    assert compute_optimal(1e21, LAW)["N"] == pytest.approx(compute_optimal([1e21, 1e22], LAW)["N"][0])


def test_the_isoflop_plot_draws_exactly_the_runs_each_parabola_was_fitted_to(tmp_path, monkeypatch):
    """Runs of one budget differ by up to 30% in exact compute (steps are rounded from an
    approximate N): the fit puts them in one budget, so the plot must show all of them."""
    rows = []
    for budget in (1e15, 1e16, 1e17):
        for i, n in enumerate(np.logspace(4, 6, 5)):
            c = budget * (1.0 + 0.075 * i)  # 0%, 7.5%, ..., 30% over the nominal budget
            d = c / (6 * n)
            rows.append({"parameters": n, "tokens": d,
                         "eval_loss": LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]})
    compute = [6 * r["parameters"] * r["tokens"] for r in rows]
    fit = fit_isoflop(compute, [r["parameters"] for r in rows], [r["eval_loss"] for r in rows], n_bootstrap=10)
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("axes", fig.axes[0]))
    plots.isoflop(epath.Path(tmp_path), rows, fit)
    markers = [line for line in drawn["axes"].lines if line.get_marker() == "o"]
    assert len(markers) == 3
    for k, line in enumerate(markers):  # the k-th budget's five runs, by construction
        expected = sorted((r["parameters"], r["eval_loss"]) for r in rows[5 * k:5 * k + 5])
        drawn_points = sorted(zip(line.get_xdata(), line.get_ydata()))
        np.testing.assert_allclose(np.array(drawn_points), np.array(expected), rtol=1e-12)
