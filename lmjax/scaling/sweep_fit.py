"""Scaling laws fitted to a finished sweep: what `lmjax scaling fit SWEEP_DIR` writes.

Reads the sweep's `results.jsonl` (one row per point: parameters N, non-embedding N, tokens
D, training FLOPs, final eval loss) and each point's `metrics.jsonl` (the evaluation losses
along training), then fits:

- L(C) = a·C^(−b) on the compute frontier of the training curves, C in PF-days (GPT-3's
  L = 2.57·C^(−0.048) is the reference shape);
- Kaplan's L(N) = (N_c/N)^α_N on non-embedding N, using each model size's best final loss;
- Chinchilla's approaches 1 (envelope of the final losses at each run's horizons, from its
  cooldown branches; of the training curves when the sweep has none), 2 (IsoFLOP parabolas) and 3
  (parametric L(N, D)), with N the total parameters and C = 6·N·D, and the compute-optimal
  exponents a (N* ∝ C^a) and b (D* ∝ C^b) each implies.

An approach the sweep cannot support (too few budgets, no crossing curves) is reported in
`fit.json` with the reason, not fitted. Plots are PNGs beside `fit.json`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from etils import epath

from lmjax.errors import DataError, LmjaxError
from lmjax.scaling.compute import PF_DAY
from lmjax.scaling.fits import compute_optimal, fit_chinchilla, fit_kaplan_n, fit_power_law
from lmjax.scaling.frontier import compute_frontier, fit_envelope, fit_isoflop

RESULTS_FILE = "results.jsonl"
FIT_FILE = "fit.json"
# Published compute-optimal exponents of N* ∝ C^a.
KAPLAN_A = 0.73
CHINCHILLA_A = 0.50


def read_sweep(sweep_dir: str | epath.PathLike) -> tuple[list[dict], list[dict]]:
    """(final rows of the succeeded points, one training curve per point)."""
    root = epath.Path(sweep_dir)
    results = root / RESULTS_FILE
    if not results.exists():
        raise DataError(f"{root} has no {RESULTS_FILE}: give the directory `lmjax sweep run` wrote")
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    done = [row for row in rows if row.get("status") == "succeeded" and _complete(row)
            and row.get("listed", True)]  # not the points a later edit of the sweep file dropped
    if len(done) < 3:
        raise DataError(f"{root} has {len(done)} succeeded points with losses; a fit needs at least 3")
    return done, [curve for curve in (_curve(root, row) for row in done) if curve]


def _complete(row: dict) -> bool:
    needed = ("parameters", "non_embedding_parameters", "tokens", "eval_loss")
    return all(isinstance(row.get(key), (int, float)) and row[key] > 0 for key in needed)


def _curve(root: epath.Path, row: dict) -> dict | None:
    """The point's evaluation losses against tokens seen, as (C = 6·N·D, L)."""
    path = root / row["dir"] / "metrics.jsonl"
    if not path.exists():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    points = [(r["tokens_seen"], r["eval_loss"]) for r in records
              if isinstance(r.get("eval_loss"), (int, float)) and r.get("tokens_seen")]
    if len(points) < 2:
        return None
    tokens, losses = map(np.asarray, zip(*points))
    return {"N": float(row["parameters"]), "C": 6.0 * row["parameters"] * tokens, "L": losses,
            "name": row.get("name")}


def horizon_curves(rows: list[dict]) -> list[dict]:
    """Approach 1 from real horizons: for each model size, the final (C, L) of every run of
    that size (cooldown branches, and the same size at other budgets), shortest first:
    each ends its own decay there (Hoffmann et al. trained each size to several horizons).
    Empty when the sweep has no branches: then the evaluation curves stand in, whose
    intermediate points are not those of runs stopped there. A size with fewer than 3
    horizons gives no curve."""
    if not any(row.get("branch") for row in rows):
        return []
    sizes: dict[float, list[dict]] = {}
    for row in rows:
        sizes.setdefault(float(row["parameters"]), []).append(row)
    curves = []
    for members in sizes.values():
        if len({row["tokens"] for row in members}) < 3:
            continue
        members = sorted(members, key=lambda row: row["tokens"])
        n = float(members[0]["parameters"])
        curves.append({"N": n, "C": np.array([6.0 * n * row["tokens"] for row in members]),
                       "L": np.array([row["eval_loss"] for row in members]), "name": members[-1].get("name")})
    return curves


def _attempt(fit, *args, **kwargs) -> dict[str, Any]:
    try:
        return fit(*args, **kwargs)
    except LmjaxError as err:
        return {"error": str(err)}


def fit_sweep(rows: list[dict], curves: list[dict], n_bootstrap: int = 200) -> dict[str, Any]:
    """Every fit the sweep supports, as JSON-ready data."""
    n_total = np.array([row["parameters"] for row in rows], dtype=float)
    n_non_embedding = np.array([row["non_embedding_parameters"] for row in rows], dtype=float)
    tokens = np.array([row["tokens"] for row in rows], dtype=float)
    loss = np.array([row["eval_loss"] for row in rows], dtype=float)
    compute = 6.0 * n_total * tokens
    fits: dict[str, Any] = {
        "n_points": len(rows),
        "loss_vs_compute": _attempt(_loss_vs_compute, curves, compute, loss, n_bootstrap),
        "kaplan_L_of_N": _attempt(_kaplan, n_non_embedding, loss, n_bootstrap),
        "chinchilla_1_envelope": _attempt(fit_envelope, horizon_curves(rows) or curves,
                                          n_bootstrap=n_bootstrap),
        "chinchilla_2_isoflop": _attempt(fit_isoflop, compute, n_total, loss, n_bootstrap=n_bootstrap),
        "chinchilla_3_parametric": _attempt(_parametric, n_total, tokens, loss, compute,
                                            max(n_bootstrap // 4, 10)),
        "published": {"kaplan_a": KAPLAN_A, "chinchilla_a": CHINCHILLA_A,
                      "gpt3_loss_vs_compute": {"a": 2.57, "b": 0.048, "C_unit": "PF-days"}},
    }
    return _jsonable(fits)


def _loss_vs_compute(curves, compute, loss, n_bootstrap) -> dict:
    """Frontier of the training curves (or of the final points when no curves were logged)."""
    if curves:
        c = np.concatenate([curve["C"] for curve in curves])
        l = np.concatenate([curve["L"] for curve in curves])
    else:
        c, l = compute, loss
    frontier = compute_frontier(c, l)
    fit = fit_power_law(c[frontier] / PF_DAY, l[frontier], n_bootstrap=n_bootstrap)
    return {**fit, "C_unit": "PF-days", "frontier": {"C": c[frontier].tolist(), "L": l[frontier].tolist()}}


def _kaplan(n_non_embedding, loss, n_bootstrap) -> dict:
    sizes = np.unique(n_non_embedding)
    best = np.array([loss[n_non_embedding == size].min() for size in sizes])
    return fit_kaplan_n(sizes, best, n_bootstrap=n_bootstrap)


def _parametric(n_total, tokens, loss, compute, n_bootstrap) -> dict:
    """Approach 3; its bootstrap refits L-BFGS each time, so it takes a quarter as many."""
    fit = fit_chinchilla(n_total, tokens, loss, n_bootstrap=n_bootstrap)
    optimum = compute_optimal(np.unique(compute), fit)
    return {**fit, "a": optimum["a"], "b": optimum["b"], "G": optimum["G"]}


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_fit(sweep_dir: str | epath.PathLike, n_bootstrap: int = 200) -> dict[str, Any]:
    """Fits the sweep and writes fit.json and the plots into its directory."""
    from lmjax.scaling import plots

    root = epath.Path(sweep_dir)
    rows, curves = read_sweep(root)
    fits = fit_sweep(rows, curves, n_bootstrap)
    (root / FIT_FILE).write_text(json.dumps(fits, indent=2) + "\n")
    fits["plots"] = [str(path) for path in plots.draw_all(root, rows, curves, fits)]
    return fits
