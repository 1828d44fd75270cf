"""The µP lr-transfer figure and table from `lmjax sweep run experiments/mup_lr_transfer.yaml`:
final eval loss against lr, one line per width, a panel per parametrization; the best lr per
width; whether it stays within one grid step across widths. Copies the sweep's results.jsonl
to docs/scaling/mup/lr_transfer_results.jsonl and writes lr_transfer.png, lr_transfer.json and
lr_transfer.md (the table in docs/scaling.md).

    PYTHONPATH=$PWD python experiments/mup_lr_transfer_plot.py [sweeps/mup_lr_transfer]
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = pathlib.Path("docs/scaling/mup")
PARAMETRIZATIONS = {"standard": "standard parametrization", "mup": "µP (base width 32)"}


def load(sweep_dir: pathlib.Path) -> dict[str, dict[int, dict[float, float]]]:
    """eval loss by parametrization, width and lr, for the points that succeeded."""
    losses: dict[str, dict[int, dict[float, float]]] = {p: {} for p in PARAMETRIZATIONS}
    for line in (sweep_dir / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("status") != "succeeded" or row.get("eval_loss") is None:
            continue
        values = row["values"]
        width, lr = int(values["model.d_model"]), float(values["train.lr"])
        losses[values["model.parametrization"]].setdefault(width, {})[lr] = row["eval_loss"]
    return losses


def summary(losses) -> dict:
    """Best lr per width and its spread across widths, in grid steps (10^0.5 each); widths
    whose lr grid has not finished are listed apart, not ranked."""
    grid = max((len(by_lr) for by_width in losses.values() for by_lr in by_width.values()),
               default=0)
    out = {}
    for parametrization, by_width in losses.items():
        best = {w: min(by_lr, key=by_lr.get) for w, by_lr in sorted(by_width.items())
                if len(by_lr) == grid}
        steps = [round(2 * math.log10(lr)) for lr in best.values()]
        out[parametrization] = {
            "best_lr": {str(w): lr for w, lr in best.items()},
            "best_loss": {str(w): by_width[w][lr] for w, lr in best.items()},
            "spread_grid_steps": (max(steps) - min(steps)) if steps else None,
            "unfinished_widths": sorted(w for w, by_lr in by_width.items() if len(by_lr) < grid),
        }
    return out


def plot(losses, stats) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (parametrization, title) in zip(axes, PARAMETRIZATIONS.items()):
        for width, by_lr in sorted(losses[parametrization].items()):
            lrs = sorted(by_lr)
            unfinished = width in stats[parametrization]["unfinished_widths"]
            ax.plot(lrs, [by_lr[lr] for lr in lrs], marker="o",
                    linestyle=":" if unfinished else "-",
                    label=f"d_model={width}" + (" (unfinished)" if unfinished else ""))
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        spread = stats[parametrization]["spread_grid_steps"]
        ax.set_title(f"{title}: best lr spans {spread} grid steps")
    axes[0].set_ylabel("eval loss after 200 steps")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(OUT / "lr_transfer.png", dpi=110)


def table(losses) -> str:
    """Markdown: eval loss per (parametrization, width) row and lr column, best in bold."""
    lrs = sorted({lr for by_width in losses.values() for by_lr in by_width.values()
                  for lr in by_lr})
    lines = ["| eval loss | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
             "|---|" + "---|" * len(lrs)]
    for parametrization, by_width in losses.items():
        for width, by_lr in sorted(by_width.items()):
            best = min(by_lr, key=by_lr.get)
            cells = [("**%.3f**" if lr == best else "%.3f") % by_lr[lr] if lr in by_lr else "–"
                     for lr in lrs]
            lines.append(f"| {parametrization}, d_model={width} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    sweep_dir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "sweeps/mup_lr_transfer")
    losses = load(sweep_dir)
    stats = summary(losses)
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sweep_dir / "results.jsonl", OUT / "lr_transfer_results.jsonl")
    record = {"eval_loss": {p: {str(w): {str(lr): v for lr, v in sorted(by_lr.items())}
                                for w, by_lr in sorted(by_w.items())}
                            for p, by_w in losses.items()}, "summary": stats}
    (OUT / "lr_transfer.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(losses, stats)
    (OUT / "lr_transfer.md").write_text(table(losses))
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
