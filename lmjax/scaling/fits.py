"""Scaling-law fits with bootstrap confidence intervals.

- `fit_power_law(x, y)`: y = a·x^(−b), least squares on log y against log x (the form of
  GPT-3's L(C) = 2.57·C^(−0.048) and of Kaplan et al.'s L(N) = (N_c/N)^α_N).
- `fit_chinchilla(N, D, L)`: Hoffmann et al. (2022)'s approach 3, L(N, D) = E + A/N^α + B/D^β,
  fitted as they did: the Huber loss (δ = 1e-3, summed over runs, not averaged) between
  LSE(a − α·log N, b − β·log D, e) and log L, minimised with L-BFGS from their grid of
  initialisations (A = e^a, B = e^b, E = e^e).
- `compute_optimal(C, fit)`: the compute-optimal N*(C) = G·(C/6)^a and D*(C) = G⁻¹·(C/6)^b with
  a = β/(α+β), b = α/(α+β) and G = (αA/(βB))^(1/(α+β)), for training compute C = 6·N·D.

Intervals are percentile bootstrap intervals (resampling the runs with replacement), so they
say how much the fitted values depend on which runs happened to be in the sweep.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy import optimize, special

from lmjax.errors import DataError

HUBER_DELTA = 1e-3
# Hoffmann et al. (2022), appendix D.2: α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1},
# a, b ∈ {0, 5, …, 25}.
CHINCHILLA_GRID = {
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.01, 5.0),
    "b": np.arange(0.0, 25.01, 5.0),
}
CHINCHILLA_PARAMETERS = 5
GRID_STARTS = 8  # L-BFGS runs from the best grid points (every grid point is evaluated)
# The summed Huber loss is tiny (residuals near δ = 1e-3), so scipy's default tolerances,
# absolute below a loss of 1, stop L-BFGS far from the optimum (Besiroglu et al. 2024 traced
# Hoffmann et al.'s implausibly narrow intervals to such an early stop).
LBFGS_OPTIONS = {"ftol": 1e-15, "gtol": 1e-13, "maxiter": 20_000, "maxcor": 20}

Array = Sequence[float] | np.ndarray


def checked(name: str, values: Array, minimum_points: int = 3, varying: bool = False) -> np.ndarray:
    """Values as a 1-D float array: finite, positive and at least `minimum_points` of them;
    with `varying`, not all equal (a law in x cannot be fitted where x never changes, and a
    constant y makes the exponent 0 and Kaplan's N_c = a^(1/b) overflow)."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size < minimum_points:
        raise DataError(f"{name} has {array.size} points; a fit needs at least {minimum_points}")
    bad = np.flatnonzero(~np.isfinite(array) | (array <= 0))
    if bad.size:
        raise DataError(
            f"{name}[{bad[0]}] = {array[bad[0]]} is not a finite positive number; drop that run"
        )
    if varying and np.ptp(array) == 0:
        raise DataError(f"{name} is {array[0]:g} at all {array.size} points: a fit needs points "
                        "that differ in it")
    return array


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"the inputs differ in length: {lengths}")


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def _power_law_coefficients(log_x: np.ndarray, log_y: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(log_x, log_y, 1)
    return float(np.exp(intercept)), float(-slope)


def fit_power_law(x: Array, y: Array, *, n_bootstrap: int = 1000, level: float = 0.95,
                  seed: int = 0) -> dict:
    """y = a·x^(−b): returns {"a", "b", "a_interval", "b_interval", "n_points"}."""
    x, y = checked("x", x, varying=True), checked("y", y, varying=True)
    _same_length(x=x, y=y)
    log_x, log_y = np.log(x), np.log(y)
    a, b = _power_law_coefficients(log_x, log_y)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_bootstrap):
        pick = rng.integers(0, len(x), len(x))
        if np.ptp(log_x[pick]) > 0:
            samples.append(_power_law_coefficients(log_x[pick], log_y[pick]))
    a_samples, b_samples = np.asarray(samples).T
    return {"a": a, "b": b, "a_interval": _interval(a_samples, level),
            "b_interval": _interval(b_samples, level), "n_points": int(len(x))}


def fit_kaplan_n(n_params: Array, loss: Array, **bootstrap) -> dict:
    """Kaplan et al. (2020)'s L(N) = (N_c/N)^α_N on non-embedding parameters N: the power
    law with α_N = b and N_c = a^(1/b). Returns {"N_c", "alpha_N", and their intervals}."""
    fit = fit_power_law(n_params, loss, **bootstrap)
    alpha = fit["b"]
    low_b, high_b = fit["b_interval"]
    return {
        "N_c": fit["a"] ** (1.0 / alpha),
        "alpha_N": alpha,
        "alpha_N_interval": (low_b, high_b),
        "n_points": fit["n_points"],
    }


def _chinchilla_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray,
                          log_l: np.ndarray) -> tuple[float, np.ndarray]:
    """Summed Huber loss of the log-space prediction and its gradient in (a, b, e, α, β)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    exp_terms = np.exp(terms - top)
    total = exp_terms.sum(axis=0)
    residual = top + np.log(total) - log_l
    loss = float(np.sum(special.huber(HUBER_DELTA, residual)))
    slope = np.clip(residual, -HUBER_DELTA, HUBER_DELTA)
    weights = exp_terms / total
    gradient = np.array([
        np.sum(slope * weights[0]),
        np.sum(slope * weights[1]),
        np.sum(slope * weights[2]),
        -np.sum(slope * weights[0] * log_n),
        -np.sum(slope * weights[1] * log_d),
    ])
    return loss, gradient


def _grid_losses(log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every initialisation of the grid with its summed Huber loss (vectorised)."""
    grid = np.array(list(itertools.product(
        CHINCHILLA_GRID["a"], CHINCHILLA_GRID["b"], CHINCHILLA_GRID["e"],
        CHINCHILLA_GRID["alpha"], CHINCHILLA_GRID["beta"],
    )))
    a, b, e, alpha, beta = (grid[:, i, None] for i in range(5))
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, (len(grid), len(log_n)))])
    residual = special.logsumexp(terms, axis=0) - log_l
    return grid, np.sum(special.huber(HUBER_DELTA, residual), axis=1)


def _minimise(starts: np.ndarray, log_n, log_d, log_l) -> np.ndarray:
    best, best_loss = None, np.inf
    for start in starts:
        result = optimize.minimize(_chinchilla_objective, start, args=(log_n, log_d, log_l),
                                   jac=True, method="L-BFGS-B", options=LBFGS_OPTIONS)
        if result.fun < best_loss:
            best, best_loss = result.x, result.fun
    return best


def _named(theta: np.ndarray) -> dict[str, float]:
    a, b, e, alpha, beta = theta
    return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)),
            "alpha": float(alpha), "beta": float(beta)}


def fit_chinchilla(n_params: Array, n_tokens: Array, loss: Array, *, n_bootstrap: int = 100,
                   level: float = 0.95, seed: int = 0) -> dict:
    """L(N, D) = E + A/N^α + B/D^β: returns {"E", "A", "B", "alpha", "beta", "<name>_interval"
    for each, "n_points", "huber_loss"}. Bootstrap refits start from the full-data optimum."""
    # five parameters (E, A, B, α, β): fewer runs than that fit any law exactly
    n, d, l = (checked(name, values, minimum_points=CHINCHILLA_PARAMETERS, varying=True)
               for name, values in (("N", n_params), ("D", n_tokens), ("L", loss)))
    _same_length(N=n, D=d, L=l)
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(l)
    grid, grid_loss = _grid_losses(log_n, log_d, log_l)
    theta = _minimise(grid[np.argsort(grid_loss)[:GRID_STARTS]], log_n, log_d, log_l)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_bootstrap):
        pick = rng.integers(0, len(n), len(n))
        samples.append(_named(_minimise([theta], log_n[pick], log_d[pick], log_l[pick])))
    fit = _named(theta)
    for name in list(fit):
        fit[f"{name}_interval"] = _interval(np.array([s[name] for s in samples]), level)
    fit["n_points"] = int(len(n))
    fit["huber_loss"] = _chinchilla_objective(theta, log_n, log_d, log_l)[0]
    return fit


def optimal_exponents(alpha: float, beta: float) -> tuple[float, float]:
    """(a, b) of N* ∝ C^a and D* ∝ C^b: a = β/(α+β), b = α/(α+β)."""
    return beta / (alpha + beta), alpha / (alpha + beta)


def compute_optimal(compute: Array | float, fit: dict) -> dict:
    """N*(C) = G·(C/6)^a, D*(C) = G⁻¹·(C/6)^b for a `fit_chinchilla` result; C in FLOP."""
    c = np.asarray(compute, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(c.reshape(-1)) | (c.reshape(-1) <= 0))
    if bad.size:
        raise DataError(f"compute C = {c.reshape(-1)[bad[0]]} is not a finite positive number of "
                        "FLOP: give training compute such as 1e21")
    alpha, beta = fit["alpha"], fit["beta"]
    a, b = optimal_exponents(alpha, beta)
    g = (alpha * fit["A"] / (beta * fit["B"])) ** (1.0 / (alpha + beta))
    n_opt = g * (c / 6.0) ** a
    d_opt = (c / 6.0) ** b / g
    return {"N": n_opt, "D": d_opt, "a": a, "b": b, "G": g,
            "loss": fit["E"] + fit["A"] / n_opt**alpha + fit["B"] / d_opt**beta}
