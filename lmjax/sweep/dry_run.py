"""`lmjax sweep run FILE --dry-run`: every point checked and costed; nothing written or run.

Each point's config is validated for this machine's devices and hosts (or, with a `target:`
mesh in the sweep file, for the target's), then listed with N, D, C, status and an estimated
time: on this machine from a measured FLOP rate (a few compiled steps of the cheapest point,
`plan.measured_flop_rate`), on a target from its peak and stated MFU, with memory per device.
"""

from __future__ import annotations

from lmjax.sweep import plan as plan_lib
from lmjax.sweep.isoflop import checked_epochs
from lmjax.sweep import results as results_lib
from lmjax.sweep import status as status_lib
from lmjax.sweep.runner import check_points, point_dir
from lmjax.sweep.spec import Point, SweepSpec


def dry_run(spec: SweepSpec, points: list[Point], calibrate: bool = True) -> str:
    """The dry-run table as text; raises the first invalid point's one-line error."""
    import jax

    target = spec.target
    if target:
        check_points(points, int(target["devices"]), int(target.get("hosts", 1)))
    else:
        check_points(points, jax.device_count(), jax.process_count())
    plans = [plan_lib.estimate(point.config) for point in points]
    states = [status_lib.read_status(point_dir(spec, point))["state"] for point in points]
    epochs = checked_epochs(spec, points)  # an isoflop block: refuses points above max_epochs
    if target:
        return _target_table(spec, points, plans, states)
    rate = _rate(points, plans) if calibrate else None
    header = ["name", "hash", "N", "N_nonemb", "D", "C", "steps", "est_time", "status"]
    cells = [[p.name, p.hash, *_counts(plan), str(p.config.train.steps),
              _duration(plan["train_flops"] / rate) if rate else "", state]
             for p, plan, state in zip(points, plans, states)]
    if epochs:
        header.insert(-2, "epochs")
        for row, value in zip(cells, epochs):
            row.insert(-2, f"{value:.2f}")
    total = sum(plan["train_flops"] for plan in plans)
    footer = (f"\nmeasured {rate:.3g} model FLOP/s on this machine (compiled steps of "
              f"{points[_cheapest(plans)].name}); all points: {_duration(total / rate)} of training, "
              "compilation and evaluation not included") if rate else ""
    data = (f"; up to {max(epochs):.2f} epochs of the data (isoflop.max_epochs "
            f"{spec.isoflop['max_epochs']:g})") if epochs else ""
    return (f"sweep {spec.name}: {len(points)} points valid for {jax.device_count()} devices{data}\n"
            + results_lib.plain_table(header, cells) + footer)


def _counts(plan) -> list[str]:
    return [f"{plan[k]:.3g}" for k in ("parameters", "non_embedding_parameters", "tokens", "train_flops")]


def _cheapest(plans) -> int:
    return min(range(len(plans)), key=lambda i: plans[i]["train_flops"] / plans[i]["tokens"])


def _rate(points, plans) -> float:
    return plan_lib.measured_flop_rate(points[_cheapest(plans)].config)


def _target_table(spec, points, plans, states) -> str:
    header = ["name", "N", "D", "C", "PF-days", "state_GB/dev", "act_GB/dev", "mem_GB/dev",
              "days@MFU", "fits", "status"]
    cells, target = [], spec.target
    for point, plan, state in zip(points, plans, states):
        est = plan_lib.target_estimate(point.config, target, plan["train_flops"])
        limit = est["memory_limit"]
        fits = "" if limit is None else ("yes" if est["memory_per_device"] <= limit else "no")
        cells.append([point.name, f"{plan['parameters']:.3g}", f"{plan['tokens']:.3g}",
                      f"{plan['train_flops']:.3g}", f"{plan['train_flops'] / 8.64e19:.3g}",
                      f"{est['state_bytes_per_device'] / 1e9:.2f}",
                      f"{est['activation_bytes_per_device'] / 1e9:.2f}",
                      f"{est['memory_per_device'] / 1e9:.2f}", f"{est['target_seconds'] / 86400:.2f}",
                      fits, state])
    return (f"sweep {spec.name}: {len(points)} points valid on {target.get('name', '')} "
            f"({target['devices']} devices, {target.get('hosts', 1)} hosts, peak "
            f"{float(target['peak_flops']):.3g} FLOP/s per device, MFU {float(target.get('mfu', 0.4)):.0%})\n"
            + results_lib.plain_table(header, cells))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
