#!/usr/bin/env bash
# Measure this machine's GPU in under 8 minutes (issue 12) and write docs/bench-<gpu>.md:
#   1. the CUDA tests (`pytest -m cuda`),
#   2. a two-epoch run of three steps (first, middle, last) on Imagenette-shaped synthetic data,
#   3. `roadmap bench --device cuda` without and with --compile, on the same three steps (all 17 steps and the
#      reference loop do not fit in 8 minutes: run `roadmap bench --device cuda` for the whole roadmap).
# Each part has its own time limit, so the whole stays under 8 minutes; a part that runs out is reported as such.
# Without CUDA it prints one line and exits 2. Usage: bash scripts/gpu-check.sh   (PYTHON=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3 || command -v python)
if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
    echo "gpu-check: torch does not import with $PY (run scripts/setup.sh, or set PYTHON=); nothing measured" >&2
    exit 2
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    echo "gpu-check: no CUDA GPU here (torch.cuda.is_available() is False with $PY); nothing measured" >&2
    exit 2
fi

GPU=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')
TORCH=$("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')
SLUG=$(echo "$GPU" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+|-+$//g')
DOC="docs/bench-${SLUG}.md"
LOG=$(mktemp -d)
DATA="synthetic:classes=10,size=160,train=9469,val=3925"   # Imagenette-160's shape
STEPS3="resnet50,move_up_dwconv,convnext_tiny"
T0=$(date +%s)
status=0

part() {  # part NAME LIMIT_SECONDS COMMAND...: run with a time limit, keep its output, note how it ended
    local name=$1 limit=$2; shift 2
    local start=$(date +%s)
    echo "gpu-check: $name ..." >&2
    timeout "$limit" "$@" >"$LOG/$name.out" 2>"$LOG/$name.err"
    local rc=$?
    local took=$(( $(date +%s) - start ))
    if [ $rc -eq 124 ]; then echo "timed out after ${limit} s" >"$LOG/$name.rc"; status=1
    elif [ $rc -ne 0 ]; then echo "failed (exit $rc) after ${took} s" >"$LOG/$name.rc"; status=1
    else echo "done in ${took} s" >"$LOG/$name.rc"; fi
    echo "gpu-check: $name $(cat "$LOG/$name.rc")" >&2
}

CMD_TESTS="$PY -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py"
CMD_RUN="$PY -m roadmap run --device cuda --dataset $DATA --steps $STEPS3 --epochs 2 --preset quick --quiet --no-report --out $LOG/run"
CMD_BENCH="$PY -m roadmap bench --device cuda --format markdown --warmup 3 --iters 15 --steps $STEPS3"
CMD_BENCH_C="$PY -m roadmap bench --device cuda --format markdown --warmup 3 --iters 15 --compile --no-reference --steps $STEPS3"

part tests 120 $CMD_TESTS           # limits: 120 + 90 + 120 + 120 s = 7.5 min at most
part run 90 $CMD_RUN
part bench 120 $CMD_BENCH
part bench-compile 120 $CMD_BENCH_C

{
    echo "# GPU check: $GPU"
    echo
    echo "Measured by \`bash scripts/gpu-check.sh\` on $(date -u +%Y-%m-%d) ($(( $(date +%s) - T0 )) s in all)."
    echo
    echo "- GPU: $GPU ($("$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"{p.total_memory / 2**30:.0f} GiB")'))"
    echo "- torch: $TORCH"
    echo "- git revision: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "## CUDA tests ($(cat "$LOG/tests.rc"))"
    echo
    echo "\`$CMD_TESTS\`"
    echo
    echo '```'
    tail -n 15 "$LOG/tests.out"
    echo '```'
    echo
    echo "## Two epochs of three steps on Imagenette-shaped synthetic data ($(cat "$LOG/run.rc"))"
    echo
    echo "\`${CMD_RUN/$LOG\/run/OUT}\`"
    echo
    echo '```'
    grep -E "data path|epoch|done|diverged|error" "$LOG/run.out" "$LOG/run.err" | sed "s|$LOG/||" | tail -n 20
    echo '```'
    for b in bench bench-compile; do
        cmd=$CMD_BENCH; [ $b = bench-compile ] && cmd=$CMD_BENCH_C
        echo
        echo "## \`roadmap bench\`$([ $b = bench-compile ] && echo ' --compile') ($(cat "$LOG/$b.rc"))"
        echo
        echo "\`$cmd\`"
        echo
        cat "$LOG/$b.out"
        if [[ "$(cat "$LOG/$b.rc")" != "done in"* ]] && [ -s "$LOG/$b.err" ]; then
            echo; echo '```'; tail -n 10 "$LOG/$b.err"; echo '```'
        fi
    done
} >"$DOC"
echo "gpu-check: wrote $DOC" >&2
exit $status
