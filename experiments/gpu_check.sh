#!/usr/bin/env bash
# Issue 12's GPU check, under 10 minutes on one H100: trains the GPT-3 Small and Medium presets
# for a few dozen bf16 steps on synthetic batches with each attention kernel (xla, cudnn) and
# with scan_layers off and on, then a nanoGPT-style PyTorch peer (torch.compile + SDPA) at the
# same shapes; prints tokens/s, MFU against the published bf16 peak, and the ratio to PyTorch.
#
#   experiments/gpu_check.sh --pack runs/gpu_site   # here: copy omegaconf (pure Python) for a
#                                                   # GPU machine that lacks it
#   experiments/gpu_check.sh --site runs/gpu_site   # on the GPU machine, from the repo root
#   experiments/gpu_check.sh --tiny                 # CPU smoke test of every path (minutes)
#
# Results: $OUT_DIR/gpu_bench.jsonl (default runs/gpu_check) and the table on stdout. Each run
# has its own timeout, so one that hangs or runs out of memory costs only its slot.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
OUT_DIR="${OUT_DIR:-$ROOT/runs/gpu_check}"
SITE=""
TINY=0

while [ $# -gt 0 ]; do
  case "$1" in
    --pack)
      mkdir -p "$2"
      for module in omegaconf; do  # pure Python (it vendors its antlr4 runtime)
        source_dir="$("$PYTHON" -c "import $module, os; print(os.path.dirname($module.__file__))")" \
          || { echo "$PYTHON cannot import $module: set PYTHON to one that can" >&2; exit 1; }
        cp -r "$source_dir" "$2/"
      done
      echo "packed omegaconf into $2: carry it and pass --site $2"
      exit 0 ;;
    --site) SITE="$(cd "$2" && pwd)"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    *) echo "unknown argument $1: use --pack DIR, --site DIR or --tiny" >&2; exit 2 ;;
  esac
done

export PYTHONPATH="$ROOT${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PYTHON" -c "import omegaconf" 2>/dev/null; then
  echo "omegaconf is missing: run 'experiments/gpu_check.sh --pack runs/gpu_site' where it is" \
       "installed, bring runs/gpu_site along and pass --site runs/gpu_site" >&2
  exit 1
fi
mkdir -p "$OUT_DIR"
RESULTS="$OUT_DIR/gpu_bench.jsonl"
rm -f "$RESULTS"
BENCH=("$PYTHON" "$ROOT/experiments/gpu_bench.py" --out "$RESULTS")

run() {  # run SECONDS ARGS...: one benchmark process; a failure or timeout is reported, not fatal
  local seconds="$1"; shift
  echo "== $* (at most ${seconds}s)"
  timeout "$seconds" "${BENCH[@]}" "$@" || echo "!! failed or timed out (exit $?): $*"
}

date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
"$PYTHON" - <<'EOF'
import importlib
versions = []
for name in ("jax", "jaxlib", "flax", "optax", "torch"):
    try:
        versions.append(f"{name} {importlib.import_module(name).__version__}")
    except ImportError:
        versions.append(f"{name} missing")
print(", ".join(versions))
EOF

if [ "$TINY" = 1 ]; then
  run 900 --tiny --framework jax --impls xla
  run 900 --tiny --framework torch
else
  # Budget (one H100): compiling dominates; Medium without scan compiles 24 layers.
  run 140 --framework jax --preset gpt3-small --batch 16 --steps 30
  run 80 --framework torch --preset gpt3-small --batch 16 --steps 30
  run 220 --framework jax --preset gpt3-medium --batch 16 --steps 20
  run 100 --framework torch --preset gpt3-medium --batch 16 --steps 20
fi
echo
"${BENCH[@]}" --table "$RESULTS"
