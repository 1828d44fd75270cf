"""`lmjax scaling fit SWEEP_DIR`: scaling laws, fit.json and plots from a finished sweep."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "scaling", help="fit scaling laws to a sweep",
        description="Fit L(C) on the compute frontier, Kaplan's L(N) and Chinchilla's three "
        "approaches to the points of a sweep directory; writes fit.json and PNG plots into it.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit = actions.add_parser("fit", help="fit a sweep directory written by `lmjax sweep run`")
    fit.add_argument("sweep_dir", help="the sweep's output directory (holds results.jsonl)")
    fit.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for intervals")
    fit.set_defaults(func=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    from lmjax.errors import ConfigError
    from lmjax.scaling.sweep_fit import write_fit

    if args.bootstrap < 10:
        raise ConfigError(f"--bootstrap {args.bootstrap} is too few resamples for an interval; use 10 or more")
    fits = write_fit(args.sweep_dir, args.bootstrap)
    for line in summary_lines(fits):
        print(line)
    return 0


def summary_lines(fits: dict) -> list[str]:
    lines = [f"{fits['n_points']} points"]
    lvc = fits["loss_vs_compute"]
    if "error" in lvc:
        lines.append(f"L(C): {lvc['error']}")
    else:
        lines.append(f"L(C) = {lvc['a']:.3g}·C^(−{lvc['b']:.3g}), b in [{lvc['b_interval'][0]:.3g}, "
                     f"{lvc['b_interval'][1]:.3g}] (C in PF-days; GPT-3: 2.57·C^(−0.048))")
    kaplan = fits["kaplan_L_of_N"]
    lines.append(kaplan.get("error") or f"L(N) = (N_c/N)^α_N: α_N = {kaplan['alpha_N']:.3g} "
                 f"in [{kaplan['alpha_N_interval'][0]:.3g}, {kaplan['alpha_N_interval'][1]:.3g}] "
                 "(Kaplan: 0.076)")
    for key in ("chinchilla_1_envelope", "chinchilla_2_isoflop"):
        approach = fits[key]
        if "error" in approach:
            lines.append(f"{key}: {approach['error']}")
            continue
        low, high = approach["N_opt"]["exponent_interval"]
        lines.append(f"{key}: N* ∝ C^{approach['N_opt']['exponent']:.3f} [{low:.3f}, {high:.3f}] "
                     f"(Kaplan 0.73, Chinchilla 0.50)")
    parametric = fits["chinchilla_3_parametric"]
    lines.append(parametric.get("error") or
                 f"chinchilla_3_parametric: E {parametric['E']:.3g}, A {parametric['A']:.3g}, "
                 f"B {parametric['B']:.3g}, α {parametric['alpha']:.3g}, β {parametric['beta']:.3g}; "
                 f"N* ∝ C^{parametric['a']:.3f}")
    lines.extend(f"wrote {path}" for path in fits.get("plots", []))
    return lines
