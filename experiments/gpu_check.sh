#!/usr/bin/env bash
# The GPU check a stranger can run: from a fresh clone on a GPU machine with python3.12 (or uv),
#
#   experiments/gpu_check.sh          # one NVIDIA GPU: ≤ 10 minutes of checks after the install
#   experiments/gpu_check.sh --tiny   # any CPU machine: every code path that exists there
#
# It makes its own venv (OUT/venv), installs jax[cuda13] (plain jax with --tiny), the project
# from this working tree and the PyTorch peer (the [cuda13,eval,hf] extras), prints the versions
# and the device, then runs each configuration (experiments/gpu_bench.py) as its own process
# with its own time limit, inside a total budget, the most important first. Each appends its
# record to OUT/gpu_bench.jsonl the moment it ends; one that fails or runs out of time gets a
# record saying so, so a time-out loses nothing already measured. The table at the end holds
# the targets: MFU ≥ 45% at GPT-3 Medium in bfloat16, ≥ 1.0× the compiled PyTorch peer.
#
# Options:
#   --out DIR        results and venv (default runs/gpu_check)
#   --venv DIR       the venv to make or reuse (default OUT/venv)
#   --python PATH    an interpreter that already has everything: no venv, no install (a second
#                    run, or a test); also GPU_CHECK_PYTHON
#   --budget SEC     total seconds for the checks (default 600; 1800 with --tiny)
# PYTHON312 names the interpreter that makes the venv (default python3.12).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$ROOT/runs/gpu_check"
VENV=""
PYTHON="${GPU_CHECK_PYTHON:-}"
BUDGET=""
TINY=0

die() { echo "gpu_check: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) TINY=1; shift ;;
    --out|--venv|--python|--budget) [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in --out) OUT_DIR="$2" ;; --venv) VENV="$2" ;; --python) PYTHON="$2" ;;
                   --budget) BUDGET="$2" ;; esac
      shift 2 ;;
    *) die "unknown argument $1: use --tiny, --out DIR, --venv DIR, --python PATH or --budget SECONDS" ;;
  esac
done
[ -z "$BUDGET" ] && BUDGET=$([ "$TINY" = 1 ] && echo 1800 || echo 600)
[[ "$BUDGET" =~ ^[0-9]+$ ]] || die "--budget must be whole seconds, not '$BUDGET'"
mkdir -p "$OUT_DIR" || die "cannot make the results folder $OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
VENV="${VENV:-$OUT_DIR/venv}"

make_venv() {  # the venv, made with python3.12 or uv, with the project and the peer installed
  local maker="${PYTHON312:-python3.12}" extras="cuda13,eval,hf"
  [ "$TINY" = 1 ] && extras="eval,hf"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "== making $VENV"
    if "$maker" -c "" 2>/dev/null; then
      "$maker" -m venv "$VENV" || die "'$maker -m venv $VENV' failed"
    elif command -v uv >/dev/null; then
      uv venv --seed --python 3.12 "$VENV" || die "'uv venv --python 3.12 $VENV' failed"
    else
      die "needs python3.12 or uv on PATH to make its venv (or PYTHON312=/path/to/python3.12)"
    fi
  fi
  echo "== installing $ROOT[$extras] into $VENV"
  "$VENV/bin/python" -m pip install -q "$ROOT[$extras]" \
    || die "installing $ROOT[$extras] into $VENV failed: see pip's message above"
  PYTHON="$VENV/bin/python"
}

[ -n "$PYTHON" ] || make_venv
"$PYTHON" -c "" 2>/dev/null || die "cannot run the interpreter $PYTHON"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this working tree's lmjax, always
# torch.compile's cache, ours alone: a compile cut short by a time-limit leaves truncated
# files that break the next run, so a time-out removes it.
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$OUT_DIR/torchinductor}"
RESULTS="$OUT_DIR/gpu_bench.jsonl"
: > "$RESULTS"

date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
"$PYTHON" - <<'EOF' || die "the interpreter cannot import jax: install the project, or drop --python"
import importlib, sys
versions = [f"python {sys.version.split()[0]}"]
for name in ("jax", "jaxlib", "flax", "optax", "torch", "transformers", "lm_eval"):
    try:
        module = importlib.import_module(name)
        versions.append(f"{name} {getattr(module, '__version__', '?')}")
    except ImportError:
        versions.append(f"{name} missing")
print(", ".join(versions))
import jax
print("devices:", ", ".join(f"{d.platform} {d.device_kind}" for d in jax.devices()))
EOF

START=$SECONDS
check() {  # check NAME SECONDS ARGS...: one configuration, its own process and time limit
  local name="$1" limit="$2" left status code; shift 2
  left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt 20 ]; then
    status="skipped: the ${BUDGET}s budget was spent"
  else
    [ "$left" -lt "$limit" ] && limit=$left
    echo "== $name (at most ${limit}s)"
    timeout -k 10 "$limit" "$PYTHON" "$ROOT/experiments/gpu_bench.py" --check "$name" \
      --out "$RESULTS" "$@"
    code=$?
    case $code in
      0) return ;;
      124|137) status="timed out after ${limit}s"; rm -rf "$TORCHINDUCTOR_CACHE_DIR" ;;
      *) status="failed with exit code $code" ;;
    esac
  fi
  echo "!! $name: $status"
  printf '{"check": "%s", "status": "%s", "date": "%s"}\n' "$name" "$status" \
    "$(date -u '+%Y-%m-%d %H:%M:%S')" >> "$RESULTS"
}

if [ "$TINY" = 1 ]; then
  T=(--tiny)
  check "tiny lmjax xla scan=false" 300 "${T[@]}" --framework jax --impl xla --scan false
  check "tiny lmjax xla scan=true" 300 "${T[@]}" --framework jax --impl xla --scan true
  check "tiny lmjax cudnn scan=false" 120 "${T[@]}" --framework jax --impl cudnn --scan false
  check "tiny pytorch peer" 900 "${T[@]}" --framework torch
  check "tiny decode" 300 "${T[@]}" --framework decode
  check "tiny scorer vs HFLM" 400 "${T[@]}" --framework scorer
else
  # Budget (one H100): compiling dominates, so the first of each kind is the one that counts.
  M=(--preset gpt3-medium --batch 16 --steps 20)
  S=(--preset gpt3-small --batch 16 --steps 30)
  check "gpt3-medium lmjax cudnn scan=false" 110 "${M[@]}" --framework jax --impl cudnn --scan false
  check "gpt3-medium pytorch peer" 90 "${M[@]}" --framework torch
  check "gpt3-small lmjax cudnn scan=false" 70 "${S[@]}" --framework jax --impl cudnn --scan false
  check "gpt3-small pytorch peer" 60 "${S[@]}" --framework torch
  check "gpt3-small decode" 50 --preset gpt3-small --batch 8 --framework decode
  check "gpt3-small scorer vs HFLM" 60 --framework scorer
  check "gpt3-medium lmjax cudnn scan=true" 60 "${M[@]}" --framework jax --impl cudnn --scan true
  check "gpt3-medium lmjax xla scan=false" 100 "${M[@]}" --framework jax --impl xla --scan false
  check "gpt3-medium lmjax xla scan=true" 60 "${M[@]}" --framework jax --impl xla --scan true
  check "gpt3-small lmjax cudnn scan=true" 45 "${S[@]}" --framework jax --impl cudnn --scan true
  check "gpt3-small lmjax xla scan=false" 60 "${S[@]}" --framework jax --impl xla --scan false
  check "gpt3-small lmjax xla scan=true" 45 "${S[@]}" --framework jax --impl xla --scan true
fi
echo
echo "checks took $((SECONDS - START))s of the ${BUDGET}s budget; records in $RESULTS"
"$PYTHON" "$ROOT/experiments/gpu_bench.py" --table "$RESULTS"
