#!/usr/bin/env bash
# Measure this machine's GPU in under 8 minutes (issues 12, 20) and write docs/bench-<gpu>.md, part by part:
#   smoke          a torch.compile smoke check (a C compiler and Triton); when it fails, the compile parts are skipped
#                  with its reason and the rest still runs,
#   tests          the CUDA tests (`pytest -m cuda`) but the compile test,
#   run            a two-epoch run of three steps (first, middle, last) on Imagenette-shaped synthetic data,
#   bench          `roadmap bench --device cuda` on those steps, beside the reference loop,
#   precision      `roadmap bench --models-only --precision bf16,fp16`: both precisions side by side, interleaved
#                  (the CUDA tests' fp16 variants ran in `tests`; fp16 is what GPUs below compute capability 8.0 get),
#   bench-compile  `roadmap bench --device cuda --compile` on convnext_tiny alone (its time limit: the estimate below),
#   compile-test   the CUDA compile test (no recompiles after warm-up), last, so it cannot push the others out.
# Every part has its own time limit (`timeout -s INT -k 15`: Python stops as on Ctrl-C, unbuffered, so what a part
# printed before its limit is kept; `roadmap bench` prints each row as it is measured) and none runs past the
# script's budget; a part that fails or times out does not stop the later ones. The doc says per part: ok, failed
# (its last lines) or timed out (its rows so far), and how long it took.
# Without CUDA it prints one line and exits 2. `--plan` prints the parts, their commands and time limits and the total
# (no GPU needed). Usage: bash scripts/gpu-check.sh [--plan]   (PYTHON=... to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3 || command -v python)
export PYTHONUNBUFFERED=1

BUDGET=${GPU_CHECK_BUDGET:-455}  # s: no part runs past it; with GRACE (a part that ignores SIGINT) and the doc: < 8 min
GRACE=15    # s between SIGINT and SIGKILL
LOG=${GPU_CHECK_LOG:-$(mktemp -d)}
DATA="synthetic:classes=10,size=160,train=9469,val=3925"   # Imagenette-160's shape
STEPS3="resnet50,move_up_dwconv,convnext_tiny"
COMPILE_TEST="tests/test_cuda.py::test_compile_has_no_recompiles_after_warm_up"
PYTEST="$PY -m pytest -m cuda -q -rfEs -p no:cacheprovider"
# The compile part's estimate (cold inductor compiles of convnext_tiny at 160 px, batch 128; guessed, not yet measured
# on a GPU; the first gpu-check run's doc says how long the part took):
EST_TRAIN=45 EST_EVAL=15 EST_AUGMENT=10 EST_MEASURE=20 EST_START=10
COMPILE_EST=$((EST_TRAIN + EST_EVAL + EST_AUGMENT + EST_MEASURE + EST_START))
COMPILE_WHY="training graph $EST_TRAIN + evaluation graph $EST_EVAL (one: the last batch is padded) + augmentation \
$EST_AUGMENT (cached by the run part) + 3 warm-up and 15 timed steps, 2 evaluation passes $EST_MEASURE + process \
start $EST_START"

NAMES=(smoke tests run bench precision bench-compile compile-test)
declare -A LIMIT TITLE CMD
LIMIT[smoke]=20; TITLE[smoke]="torch.compile smoke check"
CMD[smoke]="$PY $LOG/smoke.py"
LIMIT[tests]=120; TITLE[tests]="CUDA tests (all but the compile test)"
CMD[tests]="$PYTEST tests/test_cuda.py --deselect $COMPILE_TEST"
LIMIT[run]=70; TITLE[run]="Two epochs of three steps on Imagenette-shaped synthetic data"
CMD[run]="$PY -m roadmap run --device cuda --dataset $DATA --steps $STEPS3 --epochs 2 --preset quick --quiet \
--no-report --out $LOG/run"
LIMIT[bench]=60; TITLE[bench]="\`roadmap bench\`"
CMD[bench]="$PY -m roadmap bench --device cuda --format markdown --warmup 3 --iters 15 --steps $STEPS3"
LIMIT[precision]=40; TITLE[precision]="bf16 against fp16, the models alone"
CMD[precision]="$PY -m roadmap bench --device cuda --format markdown --models-only --precision bf16,fp16 \
--no-reference --img-size 160 --batch-size 128 --iters 5 --rounds 2 --steps resnet50,convnext_tiny"
LIMIT[bench-compile]=$COMPILE_EST; TITLE[bench-compile]="\`roadmap bench --compile\`, convnext_tiny"
CMD[bench-compile]="$PY -m roadmap bench --device cuda --format markdown --warmup 3 --iters 15 --compile \
--no-reference --steps convnext_tiny"
LIMIT[compile-test]=45; TITLE[compile-test]="CUDA compile test (no recompiles after warm-up)"
CMD[compile-test]="$PYTEST $COMPILE_TEST"
COMPILE_PARTS=" bench-compile compile-test "

if [ -n "${GPU_CHECK_PARTS:-}" ]; then  # tests/test_gpu_check.py: these parts (NAME LIMIT COMMAND per line), no GPU
    NAMES=()
    while read -r name limit cmd; do
        NAMES+=("$name"); LIMIT[$name]=$limit; TITLE[$name]=$name; CMD[$name]=$cmd
    done <"$GPU_CHECK_PARTS"
fi

if [ "${1:-}" = "--plan" ]; then
    total=0
    echo "gpu-check plan: each part with its time limit (SIGINT, SIGKILL ${GRACE} s later); none runs past ${BUDGET} s"
    for name in "${NAMES[@]}"; do
        printf '  %-14s %4d s  %s\n' "$name" "${LIMIT[$name]}" "${CMD[$name]//$LOG\//TMP/}"
        total=$((total + LIMIT[$name]))
    done
    echo "bench-compile's limit is its estimate: $COMPILE_EST s = $COMPILE_WHY"
    echo "total: $total s of limits ($((total / 60)) min $((total % 60)) s); the script stops its parts at ${BUDGET} s, \
and ends by $((BUDGET + GRACE + 5)) s (under 8 min) even if the last part ignores SIGINT"
    [ -z "${GPU_CHECK_LOG:-}" ] && rmdir "$LOG"
    exit 0
fi

if [ -z "${GPU_CHECK_PARTS:-}" ]; then
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
    MEM=$("$PY" -c 'import torch; print(f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")')
else
    GPU="test" TORCH="(not read)" MEM="(not read)"
fi
SLUG=$(echo "$GPU" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+|-+$//g')
DOC=${GPU_CHECK_DOC:-docs/bench-${SLUG}.md}
T0=$(date +%s)
status=0
SKIP_COMPILE=""

cat >"$LOG/smoke.py" <<'EOF'
import shutil, sys, time
t0 = time.perf_counter()
import torch
try:
    import triton
except Exception as e:
    sys.exit(f"Triton does not import ({type(e).__name__}: {e})")
cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
if cc is None:
    sys.exit("no C compiler (cc, gcc or clang) on PATH: inductor needs one")
f = torch.compile(lambda x: (x.sin() * 2 + 1).sum(), fullgraph=True)
value = f(torch.ones(64, device="cuda")).item()
print(f"torch.compile works: C compiler {cc}, Triton {triton.__version__}, "
      f"{time.perf_counter() - t0:.1f} s with the interpreter's start")
EOF

part() {  # part NAME: run it with its limit (within the budget), keep its output, note how it ended and took
    local name=$1 start rc took limit
    if [[ $COMPILE_PARTS == *" $name "* ]] && [ -n "$SKIP_COMPILE" ]; then
        echo "skipped: $SKIP_COMPILE" >"$LOG/$name.rc"; : >"$LOG/$name.out"; : >"$LOG/$name.err"
        echo "gpu-check: $name $(cat "$LOG/$name.rc")" >&2
        return
    fi
    limit=$(( BUDGET - ($(date +%s) - T0) ))  # what is left of the budget
    if [ "$limit" -lt 5 ]; then
        echo "skipped: no time left of the ${BUDGET} s" >"$LOG/$name.rc"; : >"$LOG/$name.out"; : >"$LOG/$name.err"
        status=1
        return
    fi
    [ "$limit" -gt "${LIMIT[$name]}" ] && limit=${LIMIT[$name]}
    start=$(date +%s)
    echo "gpu-check: $name (at most $limit s) ..." >&2
    timeout -s INT -k "$GRACE" "$limit" bash -c "${CMD[$name]}" >"$LOG/$name.out" 2>"$LOG/$name.err"
    rc=$?
    took=$(( $(date +%s) - start ))
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "timed out after $took s (limit $limit s)" >"$LOG/$name.rc"
    elif [ $rc -ne 0 ]; then echo "failed (exit $rc) after $took s" >"$LOG/$name.rc"
    else echo "ok in $took s" >"$LOG/$name.rc"; fi
    [ $rc -ne 0 ] && status=1
    echo "gpu-check: $name $(cat "$LOG/$name.rc")" >&2
}

section() {  # section NAME: the doc's part, its command and what it printed
    local name=$1 rc
    rc=$(cat "$LOG/$name.rc")
    echo
    echo "## ${TITLE[$name]} ($rc)"
    echo
    echo "\`${CMD[$name]//$LOG\//}\`"
    echo
    case $name in
        bench|bench-compile)
            [[ $rc == "timed out"* ]] && echo "Rows measured before the limit:" && echo
            cat "$LOG/$name.out" ;;
        run)
            echo '```'
            grep -hE "data path|augmentation|epoch|done|diverged|error|warning" "$LOG/$name.out" "$LOG/$name.err" \
                | sed "s|$LOG/||g" | tail -n 25
            echo '```' ;;
        *)
            echo '```'
            tail -n 25 "$LOG/$name.out"
            echo '```' ;;
    esac
    if [[ $rc != "ok"* ]] && [[ $rc != "skipped"* ]] && [ -s "$LOG/$name.err" ]; then
        echo; echo "Last lines of its stderr:"; echo; echo '```'; tail -n 12 "$LOG/$name.err" | sed "s|$LOG/||g"
        echo '```'
    fi
}

for name in "${NAMES[@]}"; do
    before=$status
    part "$name"
    if [ "$name" = smoke ] && [[ $(cat "$LOG/smoke.rc") != "ok"* ]]; then
        SKIP_COMPILE="the torch.compile smoke check $(cat "$LOG/smoke.rc"): $(tail -n 1 "$LOG/smoke.err")"
        status=$before  # no compiler is this machine's state, not a failure of the check; the compile parts say so
    fi
done

{
    echo "# GPU check: $GPU"
    echo
    echo "Measured by \`bash scripts/gpu-check.sh\` on $(date -u +%Y-%m-%d) ($(( $(date +%s) - T0 )) s in all, \
parts limited to $BUDGET s)."
    echo
    echo "- GPU: $GPU ($MEM)"
    echo "- torch: $TORCH"
    echo "- git revision: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "| part | result |"
    echo "|---|---|"
    for name in "${NAMES[@]}"; do echo "| $name | $(cat "$LOG/$name.rc") |"; done
    for name in "${NAMES[@]}"; do section "$name"; done
} >"$DOC"
echo "gpu-check: wrote $DOC" >&2
exit $status
