"""The scaling plots people look at, as PNGs beside `fit.json`:

- loss_vs_compute.png: every run's evaluation curve against compute, the frontier and the
  fitted L(C), with GPT-3's L = 2.57·C^(−0.048) for the slope;
- isoflop.png: final loss against parameters per compute budget, each budget's parabola and
  its minimum (Chinchilla's approach 2);
- optimal_allocation.png: N*(C) and D*(C) from each approach, with the fitted exponents beside
  Kaplan's (0.73) and Chinchilla's (0.50).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from etils import epath

from lmjax.scaling.compute import PF_DAY


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: epath.Path) -> epath.Path:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=120)
    _pyplot().close(fig)
    path.write_bytes(buffer.getvalue())
    return path


def loss_vs_compute(root: epath.Path, curves: list[dict], fit: dict) -> epath.Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = [curve["N"] for curve in curves]
    colors = plt.cm.viridis(np.linspace(0, 1, max(len(curves), 1)))
    for color, curve in zip(colors[np.argsort(np.argsort(sizes))], curves):
        ax.plot(curve["C"] / PF_DAY, curve["L"], color=color, lw=1, alpha=0.7)
    if "error" not in fit:
        frontier_c = np.asarray(fit["frontier"]["C"]) / PF_DAY
        ax.plot(frontier_c, fit["frontier"]["L"], "k.", ms=4, label="frontier")
        grid = np.geomspace(frontier_c.min(), frontier_c.max(), 50)
        ax.plot(grid, fit["a"] * grid ** -fit["b"], "r--",
                label=f"L = {fit['a']:.3g}·C^(−{fit['b']:.3g})")
    ax.set(xscale="log", xlabel="compute (PF-days, 6·N·D)", ylabel="validation loss (nats/token)",
           title="loss against compute")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, root / "loss_vs_compute.png")


def isoflop(root: epath.Path, rows: list[dict], fit: dict) -> epath.Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = np.array([row["parameters"] for row in rows], dtype=float)
    losses = np.array([row["eval_loss"] for row in rows], dtype=float)
    budgets = fit.get("budgets", [])
    colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(budgets), 1)))
    for color, budget in zip(colors, budgets):
        fitted_n = np.asarray(budget["N"])  # exactly the runs this parabola was fitted to
        ax.plot(fitted_n, budget["L"], "o", color=color, label=f"C = {budget['C']:.2e}")
        p0, p1, p2 = budget["parabola"]
        grid = np.geomspace(fitted_n.min(), fitted_n.max(), 50)
        ax.plot(grid, p0 + p1 * np.log(grid) + p2 * np.log(grid) ** 2, "-", color=color, lw=1)
        ax.plot(budget["N_opt"], budget["L_opt"], "*", color=color, ms=12, mec="k")
    if not budgets:
        ax.plot(sizes, losses, "o")
        ax.set_title(f"IsoFLOP: {fit.get('error', 'no budgets')}"[:90])
    else:
        ax.set_title("IsoFLOP curves (Chinchilla approach 2)")
    ax.set(xscale="log", xlabel="parameters N", ylabel="final validation loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, root / "isoflop.png")


def optimal_allocation(root: epath.Path, fits: dict) -> epath.Path:
    plt = _pyplot()
    fig, (ax_n, ax_d) = plt.subplots(1, 2, figsize=(11, 4.5))
    for key, marker in (("chinchilla_1_envelope", "s"), ("chinchilla_2_isoflop", "o")):
        approach = fits.get(key, {})
        if "error" in approach:
            continue
        points = approach.get("frontier") or {
            "C": [b["C"] for b in approach["budgets"]], "N": [b["N_opt"] for b in approach["budgets"]]}
        c, n = np.asarray(points["C"]), np.asarray(points["N"])
        label = key.split("_", 2)[-1]
        ax_n.plot(c, n, marker, ms=4, alpha=0.6,
                  label=f"{label}: a = {approach['N_opt']['exponent']:.2f}")
        ax_d.plot(c, c / (6 * n), marker, ms=4, alpha=0.6,
                  label=f"{label}: b = {approach['D_opt']['exponent']:.2f}")
    ax_n.set_title(f"N*(C) (Kaplan a = {fits['published']['kaplan_a']}, "
                   f"Chinchilla a = {fits['published']['chinchilla_a']})")
    ax_d.set_title("D*(C) = C / (6·N*)")
    parametric = fits.get("chinchilla_3_parametric", {})
    for ax, name in ((ax_n, "N"), (ax_d, "D")):
        if "error" not in parametric and ax.lines:
            plotted = np.concatenate([line.get_xdata() for line in ax.lines])
            c = np.geomspace(plotted.min(), plotted.max(), 50)
            g, a, b = parametric["G"], parametric["a"], parametric["b"]
            ax.plot(c, g * (c / 6) ** a if name == "N" else (c / 6) ** b / g, "k--",
                    label=f"parametric: {'a' if name == 'N' else 'b'} = {a if name == 'N' else b:.2f}")
        ax.set(xscale="log", yscale="log", xlabel="compute C = 6·N·D (FLOP)",
               ylabel="parameters" if name == "N" else "tokens")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return _save(fig, root / "optimal_allocation.png")


def draw_all(root: epath.Path, rows: list[dict], curves: list[dict], fits: dict[str, Any]) -> list[epath.Path]:
    return [
        loss_vs_compute(root, curves, fits["loss_vs_compute"]),
        isoflop(root, rows, fits["chinchilla_2_isoflop"]),
        optimal_allocation(root, fits),
    ]
