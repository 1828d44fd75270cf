"""Accuracy by number of digits for the scratchpad experiment's models (experiments/scratchpad.yaml):

    python experiments/scratchpad_eval.py --runs sweeps/scratchpad/runs \
        --tests sweeps/scratchpad/data/test --out docs/test_time

Every trained point is scored through `lmjax.eval.evaluate` on each held-out length
(`test/d{k}`): a direct model on `arithmetic_direct` (greedy), a scratchpad model on
`arithmetic_scratchpad` greedy and with self-consistency (10 paths at --temperature, seed 0);
K = 5 is the vote over the first 5 of those 10 paths (the harness's majority_vote rule:
Counter.most_common, ties to the answer seen first). Writes scratchpad.json (every number),
scratchpad.md (the table) and scratchpad.png (accuracy vs digits).
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib

SAMPLES = 10


def trained_points(runs: pathlib.Path) -> list[tuple[dict, pathlib.Path]]:
    """(sweep values, run directory) of every point with a final checkpoint."""
    points = []
    for point in sorted(runs.glob("*/point.json")):
        status = point.parent / "status.json"
        if status.is_file() and json.loads(status.read_text()).get("state") == "succeeded":
            points.append((json.loads(point.read_text())["values"], point.parent))
    return points


def vote(answers: list[str]) -> str:
    return collections.Counter(answers).most_common(1)[0][0]


def score_point(values: dict, run_dir: pathlib.Path, tests: pathlib.Path, limit: int,
                temperature: float) -> list[dict]:
    from lmjax.eval import evaluate
    from lmjax.eval.harness import LmjaxLM

    model = LmjaxLM(str(run_dir), batch_size=64, max_gen_toks=128)
    task = f"arithmetic_{values['format']}"
    rows = []
    for test_dir in sorted(tests.glob("d*"), key=lambda p: int(p.name[1:])):
        digits = int(test_dir.name[1:])
        row = {**values, "digits": digits}
        greedy = evaluate(model, task, data_dir=str(test_dir), limit=limit, temperature=0.0)
        row["greedy"] = greedy["tasks"][task]["metrics"]["exact_match/first"]
        if values["format"] == "scratchpad":
            sampled = evaluate(model, task, data_dir=str(test_dir), limit=limit, samples=SAMPLES,
                               temperature=temperature, seed=0, write_prompts=True)["tasks"][task]
            row["sc10"] = sampled["metrics"]["exact_match/vote"]
            prompts = sampled["prompts"]
            row["sc5"] = sum(vote(p["answers"][:5]) == p["target"] for p in prompts) / len(prompts)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    digits = sorted({row["digits"] for row in rows})
    header = "| model (trained on ≤ N digits) | " + " | ".join(f"{d} digits" for d in digits) + " |"
    lines = [header, "|---" * (len(digits) + 1) + "|"]
    series = [("direct", "greedy", "direct, greedy"), ("scratchpad", "greedy", "scratchpad, greedy"),
              ("scratchpad", "sc5", "scratchpad, self-consistency K=5"),
              ("scratchpad", "sc10", "scratchpad, self-consistency K=10")]
    for max_digits in sorted({row["max_digits"] for row in rows}):
        for fmt, key, label in series:
            cells = {row["digits"]: row.get(key) for row in rows
                     if row["format"] == fmt and row["max_digits"] == max_digits}
            if cells and all(value is not None for value in cells.values()):
                lines.append(f"| {label} (N={max_digits}) | "
                             + " | ".join(f"{100 * cells[d]:.0f}%" for d in digits) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for max_digits in sorted({row["max_digits"] for row in rows}):
        for fmt, key, label, style in [("direct", "greedy", "direct", "o-"),
                                       ("scratchpad", "greedy", "scratchpad", "s-"),
                                       ("scratchpad", "sc5", "scratchpad SC K=5", "^--"),
                                       ("scratchpad", "sc10", "scratchpad SC K=10", "v--")]:
            points = sorted((row["digits"], 100 * row[key]) for row in rows
                            if row["format"] == fmt and row["max_digits"] == max_digits and key in row)
            if points:
                ax.plot(*zip(*points), style, label=f"{label} (trained ≤ {max_digits} digits)")
        ax.axvline(max_digits + 0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("digits per operand (right of the dotted line: longer than any in training)")
    ax.set_ylabel("exact match (%)")
    ax.set_ylim(-3, 103)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="sweeps/scratchpad/runs")
    parser.add_argument("--tests", default="sweeps/scratchpad/data/test")
    parser.add_argument("--out", default="docs/test_time")
    parser.add_argument("--limit", type=int, default=100, help="problems per length")
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for values, run_dir in trained_points(pathlib.Path(args.runs)):
        rows += score_point(values, run_dir, pathlib.Path(args.tests), args.limit, args.temperature)
    settings = {"limit": args.limit, "temperature": args.temperature, "samples": SAMPLES, "seed": 0}
    (out / "scratchpad.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")
    (out / "scratchpad.md").write_text(table(rows))
    plot(rows, out / "scratchpad.png")
    print(table(rows))


if __name__ == "__main__":
    main()
