"""The GPU check's results file as a table, and its verdict on the targets (issue 12 and 20):
MFU ≥ 45% at GPT-3 Medium in bfloat16, and lmjax's tokens/s ≥ 1.0× the compiled PyTorch peer's
at each preset. A configuration that failed, timed out or cannot run on this machine is listed
with its status."""

from __future__ import annotations

import json

# The targets: MFU at GPT-3 Medium in bfloat16, and tokens/s against the compiled peer.
TARGET_MFU, TARGET_MFU_PRESET, TARGET_PEER_RATIO = 0.45, "gpt3-medium", 1.0


def read_records(path: str) -> list[dict]:
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def print_table(path: str) -> None:
    records = read_records(path)
    measured = [r for r in records if r["status"] == "ok"]
    print(f"{'preset':12s} {'run':36s} {'tokens/s':>10s} {'TFLOP/s':>8s} {'MFU':>6s} {'vs torch':>8s}")
    for preset in dict.fromkeys(r["preset"] for r in measured):
        rows = [r for r in measured if r["preset"] == preset]
        peer = peer_rate(rows)
        for r in rows:
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
            tflops = f"{r['tflops']:8.1f}" if "tflops" in r else f"{'-':>8s}"
            ratio = f"{r['tokens_per_s'] / peer:.2f}×" if peer and r["kind"] == "train" else "-"
            print(f"{preset:12s} {r['run']:36s} {r['tokens_per_s']:10.0f} {tflops} {mfu:>6s} {ratio:>8s}")
    for r in records:
        if r["status"] != "ok":
            print(f"not measured: {r['check']}: {r['status']}")
    for r in measured:
        if r["kind"] == "scorer":
            print(f"scorer: LmjaxLM {r['ratio']:.2f}× HFLM's tokens/s, scores within "
                  f"{r['max_relative_difference']:.1e} (relative)")
    if measured:
        print(f"{measured[0]['device']}; " + ", ".join(dict.fromkeys(r["versions"] for r in measured)))
    for line in verdicts(measured):
        print(line)


def peer_rate(rows: list[dict]) -> float | None:
    return next((r["tokens_per_s"] for r in rows if r["run"].startswith("pytorch")), None)


def verdicts(measured: list[dict]) -> list[str]:
    """One line per target: the best lmjax run against it, met or missed."""
    lines = []
    lmjax = [r for r in measured if r["kind"] == "train" and r["run"].startswith("lmjax")]
    medium = [r["mfu"] for r in lmjax if r["preset"] == TARGET_MFU_PRESET and r["mfu"] is not None]
    if medium:
        met = "met" if max(medium) >= TARGET_MFU else "missed"
        lines.append(f"target MFU ≥ {TARGET_MFU:.0%} at {TARGET_MFU_PRESET}: best {max(medium):.1%}, {met}")
    for preset in dict.fromkeys(r["preset"] for r in lmjax):
        peer = peer_rate([r for r in measured if r["preset"] == preset])
        if peer:
            best = max(r["tokens_per_s"] for r in lmjax if r["preset"] == preset) / peer
            met = "met" if best >= TARGET_PEER_RATIO else "missed"
            lines.append(f"target ≥ {TARGET_PEER_RATIO:.1f}× the PyTorch peer at {preset}: best {best:.2f}×, {met}")
    return lines
