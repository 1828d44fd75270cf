"""The compute frontier and Chinchilla's approaches 1 and 2 (Hoffmann et al. 2022).

- `compute_frontier(C, L)`: the runs (or training-curve points) that reach the lowest loss
  for their compute: each has a lower loss than every point that used no more compute.
- Approach 1, `fit_envelope(curves)`: the envelope of all training curves; at each compute
  value it says which model size N was best, so N*(C) and D*(C) = C/(6N) are power laws
  fitted on those points.
- Approach 2, `fit_isoflop(C, N, L)`: for each compute budget, a parabola of L against log N;
  its minimum is N*(C) for that budget; N*(C) ∝ C^a is then fitted across budgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmjax.errors import DataError
from lmjax.scaling.fits import Array, checked, fit_power_law


def compute_frontier(compute: Array, loss: Array) -> np.ndarray:
    """Indices of the frontier points, in increasing compute."""
    c = checked("C", compute, minimum_points=1)
    l = np.asarray(loss, dtype=np.float64).reshape(-1)
    if len(l) != len(c) or not np.all(np.isfinite(l)):
        raise DataError("loss must hold one finite value per compute value")
    order = np.lexsort((l, c))
    frontier, best = [], np.inf
    for index in order:
        if l[index] < best:
            frontier.append(index)
            best = l[index]
    return np.asarray(frontier, dtype=np.int64)


def _exponent_fit(compute: np.ndarray, optimum: np.ndarray, **bootstrap) -> dict:
    """optimum = k·C^a as a power law (fit_power_law fits y = a·x^(−b), so a = −b)."""
    fit = fit_power_law(compute, optimum, **bootstrap)
    low, high = fit["b_interval"]
    return {"coefficient": fit["a"], "exponent": -fit["b"], "exponent_interval": (-high, -low)}


def fit_envelope(curves: Sequence[dict], n_budgets: int = 200, **bootstrap) -> dict:
    """Approach 1. `curves`: one dict per run with "N" (parameters) and the run's "C" and "L"
    along training (arrays, C increasing). As Hoffmann et al. did, each curve's loss is read
    (interpolated in log C) at `n_budgets` log-spaced compute values; the run with the lowest
    loss there is the best size for that compute. The values run from the end of the
    shortest run to the end of the longest: below that only the first evaluations of short
    runs exist, near initialisation, and whichever size starts lowest would win them.
    Budgets won by the smallest or largest size are dropped: there the sweep's size range,
    not the law, decides the winner."""
    if len(curves) < 3:
        raise DataError(f"approach 1 needs the curves of at least 3 model sizes, got {len(curves)}")
    sizes = np.array([float(curve["N"]) for curve in curves])
    log_c = [np.log(checked("C", curve["C"])) for curve in curves]
    grid = np.linspace(min(c[-1] for c in log_c), max(c[-1] for c in log_c), n_budgets)
    losses = np.full((len(curves), n_budgets), np.inf)
    for row, (curve, c) in enumerate(zip(curves, log_c)):
        inside = (grid >= c[0]) & (grid <= c[-1])
        losses[row, inside] = np.interp(grid[inside], c, np.asarray(curve["L"], np.float64))
    winner = np.argmin(losses, axis=0)
    interior = (sizes[winner] > sizes.min()) & (sizes[winner] < sizes.max())
    if interior.sum() < 3:
        raise DataError("fewer than 3 compute values are won by a model size inside the sweep's "
                        "range: sweep sizes whose curves cross")
    c, n = np.exp(grid[interior]), sizes[winner[interior]]
    return {
        "frontier": {"C": c.tolist(), "N": n.tolist(), "L": losses[winner, np.arange(n_budgets)][interior].tolist()},
        "N_opt": _exponent_fit(c, n, **bootstrap),
        "D_opt": _exponent_fit(c, c / (6.0 * n), **bootstrap),
    }


def budget_groups(compute: np.ndarray, relative_tolerance: float = 0.5) -> list[np.ndarray]:
    """Runs grouped by compute budget: runs within `relative_tolerance` of a group's smallest
    C are one budget. A sweep sizes steps from an approximate N and rounds them, so a budget's
    runs differ by up to ~15% in exact C (experiments/gpt_scaling.yaml), while IsoFLOP designs
    space their budgets by 2x or more."""
    order = np.argsort(compute)
    groups, current = [], [order[0]]
    for index in order[1:]:
        if compute[index] <= compute[current[0]] * (1.0 + relative_tolerance):
            current.append(index)
        else:
            groups.append(np.asarray(current))
            current = [index]
    groups.append(np.asarray(current))
    return groups


def isoflop_minimum(n_params: np.ndarray, loss: np.ndarray) -> dict:
    """The parabola L = p0 + p1·x + p2·x² in x = log N through one budget's runs, and its
    minimum; a budget whose parabola opens downwards has no minimum (an error)."""
    if len(np.unique(n_params)) < 3:
        raise DataError(f"an IsoFLOP budget needs at least 3 model sizes, got {len(np.unique(n_params))}")
    p2, p1, p0 = np.polyfit(np.log(n_params), loss, 2)
    if p2 <= 0:
        raise DataError("an IsoFLOP budget's losses do not curve upwards around a minimum: "
                        "add model sizes on both sides of the best one")
    log_n_opt = -p1 / (2.0 * p2)
    return {"N_opt": float(np.exp(log_n_opt)), "L_opt": float(p0 + p1 * log_n_opt + p2 * log_n_opt**2),
            "parabola": [float(p0), float(p1), float(p2)]}


def fit_isoflop(compute: Array, n_params: Array, loss: Array, **bootstrap) -> dict:
    """Approach 2: each budget's parabola minimum, then N*(C) ∝ C^a and D*(C) ∝ C^b. Each
    budget lists the runs its parabola was fitted to (indices, N and L), which the plot draws."""
    c, n, l = checked("C", compute), checked("N", n_params), checked("L", loss)
    budgets = []
    for group in budget_groups(c):
        minimum = isoflop_minimum(n[group], l[group])
        budgets.append({"C": float(np.mean(c[group])), **minimum, "runs": group.tolist(),
                        "N": n[group].tolist(), "L": l[group].tolist()})
    if len(budgets) < 3:
        raise DataError(f"approach 2 needs at least 3 compute budgets, got {len(budgets)}")
    budget_c = np.array([b["C"] for b in budgets])
    n_opt = np.array([b["N_opt"] for b in budgets])
    return {
        "budgets": budgets,
        "N_opt": _exponent_fit(budget_c, n_opt, **bootstrap),
        "D_opt": _exponent_fit(budget_c, budget_c / (6.0 * n_opt), **bootstrap),
    }
