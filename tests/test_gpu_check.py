"""`experiments/gpu_check.sh --tiny` from a fresh clone on this CPU: every configuration leaves
its record, every path that exists on a CPU is measured (bf16, scan on and off, the
torch.compile peer with fused AdamW, decoding, the scorer against the harness's HFLM), and
cuDNN attention is reported as what it could not run. The test's interpreter stands in for the
venv the script would make (`--python`), so no install runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT

TINY_CHECKS = ["tiny lmjax xla scan=false", "tiny lmjax xla scan=true", "tiny lmjax cudnn scan=false",
               "tiny pytorch peer", "tiny decode", "tiny scorer vs HFLM"]


def fresh_clone(destination):
    """The files a clone of this checkout holds: the tracked ones, as they are now."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name, follow_symlinks=False)
    return destination


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    clone = fresh_clone(tmp_path_factory.mktemp("clone"))
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    result = subprocess.run(["bash", "experiments/gpu_check.sh", "--tiny", "--python", sys.executable],
                            cwd=clone, env=environment, capture_output=True, text=True, timeout=2000)
    records_file = clone / "runs" / "gpu_check" / "gpu_bench.jsonl"
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    return result, {record["check"]: record for record in records}


@pytest.mark.e2e  # six processes that each start JAX or PyTorch and compile: minutes
def test_tiny_writes_a_record_for_every_check_and_measures_every_cpu_path(tiny_run):
    result, records = tiny_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(records) == TINY_CHECKS, result.stdout[-3000:]
    measured = {name: r for name, r in records.items() if r["status"] == "ok"}
    assert set(measured) == set(TINY_CHECKS) - {"tiny lmjax cudnn scan=false"}, records
    for record in measured.values():
        assert record["tokens_per_s"] > 0
    for name in TINY_CHECKS[:2] + ["tiny pytorch peer"]:  # 2 steps of 2 × 128 tokens each
        assert (measured[name]["batch"], measured[name]["seq_len"], measured[name]["steps"]) == (2, 128, 2)
    assert measured["tiny decode"]["new_tokens"] == 8 and measured["tiny decode"]["batch"] == 2


@pytest.mark.e2e
def test_tiny_says_what_it_could_not_run(tiny_run):
    result, records = tiny_run
    status = records["tiny lmjax cudnn scan=false"]["status"]
    assert status == "unavailable: cuDNN attention needs an NVIDIA GPU (JAX's backend is cpu)"
    assert f"not measured: tiny lmjax cudnn scan=false: {status}" in result.stdout


@pytest.mark.e2e
def test_tiny_scorer_agrees_with_hflm(tiny_run):
    """On a CPU both score in float32: the harness's HFLM is the independent reference."""
    _, records = tiny_run
    scorer = records["tiny scorer vs HFLM"]
    assert scorer["documents"] == 2 and scorer["tokens"] > 60
    assert scorer["max_relative_difference"] < 1e-4


# Stands in for the venv's interpreter: answers the version probe, and as gpu_bench.py writes
# the first configuration's record, fails the second, hangs in the third.
FAKE_PYTHON = textwrap.dedent("""\
    #!/usr/bin/env bash
    case "$1" in -c) exit 0 ;; -) cat > /dev/null; echo "fake versions"; exit 0 ;; esac
    case "$*" in *--table*) echo "table of $3"; exit 0 ;; esac
    case "$3" in
      *"xla scan=false") echo "{\\"check\\": \\"$3\\", \\"status\\": \\"ok\\"}" >> "$5" ;;
      *"xla scan=true") exit 3 ;;
      *) sleep 60 ;;
    esac
    """)


@pytest.mark.e2e
def test_each_check_leaves_a_record_when_it_fails_times_out_or_the_budget_is_spent(tmp_path):
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    result = subprocess.run(["bash", str(REPO_ROOT / "experiments" / "gpu_check.sh"), "--tiny",
                             "--python", str(python), "--out", str(tmp_path / "out"), "--budget", "22"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "out" / "gpu_bench.jsonl").read_text().splitlines()]
    assert [r["check"] for r in records] == TINY_CHECKS
    statuses = [r["status"] for r in records]
    assert statuses[:2] == ["ok", "failed with exit code 3"]
    assert re.fullmatch(r"timed out after 2[12]s", statuses[2]), statuses
    assert statuses[3:] == ["skipped: the 22s budget was spent"] * 3
    assert f"table of {tmp_path / 'out' / 'gpu_bench.jsonl'}" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["--budget", "ten"], "gpu_check: --budget must be whole seconds, not 'ten'"),
    (["--fast"], "gpu_check: unknown argument --fast: use --tiny, --out DIR, --venv DIR, --python PATH or --budget SECONDS"),
    (["--python", "/nonexistent/python"], "gpu_check: cannot run the interpreter /nonexistent/python"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, argv, message):
    result = subprocess.run(["bash", str(REPO_ROOT / "experiments" / "gpu_check.sh"),
                             "--out", str(tmp_path / "out"), *argv], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (2, message + "\n")
