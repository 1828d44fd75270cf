"""µP's coordinate check (Tensor Programs V, Fig. 5) for lmjax's GPT: mean |x| of the token
embedding, each block's output and the logits after t Adam steps on one fixed batch, at widths
32..512 (2 layers, 4 heads, d_ff = 4·d_model, lr 1e-2), under the standard parametrization and
under µP with base width 32. Writes docs/scaling/mup/coord_check.json (every width, step and
quantity, with the log-log slope in width at the last step) and coord_check.png.

    PYTHONPATH=$PWD python experiments/mup_coord_check.py
"""

from __future__ import annotations

import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lmjax.train.mup_coord import coord_check, width_slope  # noqa: E402

WIDTHS = [32, 64, 128, 256, 512]
BASE_WIDTH, LR, STEPS, SEED = 32, 1e-2, 5, 0
QUANTITIES = ["embedding", "block_0", "block_1", "logits"]
SHOWN_STEPS = [1, 3, 5]
OUT = pathlib.Path("docs/scaling/mup")


def main() -> None:
    results = {p: coord_check(p, WIDTHS, base_width=BASE_WIDTH, lr=LR, steps=STEPS, seed=SEED)
               for p in ("standard", "mup")}
    slopes = {p: {q: width_slope(WIDTHS, [results[p][w][-1][q] for w in WIDTHS])
                  for q in QUANTITIES} for p in results}
    OUT.mkdir(parents=True, exist_ok=True)
    record = {"widths": WIDTHS, "base_width": BASE_WIDTH, "lr": LR, "steps": STEPS, "seed": SEED,
              "model": "gpt, n_layers=2, n_heads=4, d_ff=4*d_model, vocab 256, batch 8x32 tokens",
              "mean_abs": {p: {str(w): results[p][w] for w in WIDTHS} for p in results},
              "slope_at_last_step": slopes}
    (OUT / "coord_check.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(results, slopes)
    print(json.dumps(slopes, indent=1))


def plot(results, slopes) -> None:
    fig, axes = plt.subplots(2, len(SHOWN_STEPS), figsize=(12, 7), sharey=True)
    for row, parametrization in enumerate(("standard", "mup")):
        for col, step in enumerate(SHOWN_STEPS):
            ax = axes[row, col]
            for quantity in QUANTITIES:
                ax.plot(WIDTHS, [results[parametrization][w][step][quantity] for w in WIDTHS],
                        marker="o", label=quantity)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{'µP' if parametrization == 'mup' else 'standard'}, t={step}")
            ax.set_xlabel("width (d_model)")
        axes[row, 0].set_ylabel("mean |x|")
    axes[0, 0].legend()
    fig.suptitle("Coordinate check: activation scale vs width after t Adam steps (lr 1e-2); "
                 f"slope of logits at t={STEPS}: standard {slopes['standard']['logits']:.2f}, "
                 f"µP {slopes['mup']['logits']:.2f}")
    fig.tight_layout()
    fig.savefig(OUT / "coord_check.png", dpi=110)


if __name__ == "__main__":
    main()
