#!/usr/bin/env bash
# One command for the CPU benchmarks (see BENCHMARKS.md): the averaging comparison
# (scripts/bench_average.sh: read floor `cat` / lawa average / PyTorch script) and the eval
# comparison (scripts/bench_eval.sh: lawa eval / transformers), in one run with one release
# build, ending with one table of lawa ÷ reference throughput against each target.
#
# Both scripts alternate the tools, re-read the input files right before every timed run, report
# medians, and print `result`/`check` lines that this script collects; both still run alone.
#
# Env (defaults take ~10 minutes on a quiet 2-core VM, plus a one-time generation of the inputs):
#   LAWA          a built lawa binary (default: `cargo build --release --bin lawa`)
#   PY            python with torch, transformers, safetensors, numpy (/work/pyref/bin/python)
#   AVG_FORMATS   averaging input formats, "st" and/or "bin" (default "st bin")
#   AVG_RUNS      timed runs per tool and format (default 3)
#   AVG_DIR       averaging inputs, ~6.5 GB (default /tmp/lawa-bench)
#   AVG_OUT       averaging outputs (default /dev/shm/lawa-bench-out: a tmpfs, so a slow disk
#                 does not decide the comparison; deleted after each format)
#   EVAL_MODELS   "pythia-70m pythia-160m llama-70m" (default all three)
#   EVAL_WINDOWS  windows of EVAL_CTX tokens per eval run (default 8), EVAL_CTX (512),
#   EVAL_BATCH    (4), EVAL_THREADS (2), EVAL_REPEATS (3), EVAL_DIR (/tmp/lawa-bench-eval)
#   BENCH_LOG     where the full output goes too (default /tmp/lawa-bench.log)
# Exit status: 0 when every check passed (targets not met are reported, not failed).
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${BENCH_LOG:-/tmp/lawa-bench.log}
export PY=${PY:-/work/pyref/bin/python}

if [[ -z "${LAWA:-}" ]]; then
    cargo build --release --bin lawa >&2
    LAWA="${CARGO_TARGET_DIR:-target}/release/lawa"
fi
LAWA=$(realpath "$LAWA")
export LAWA

start=$(date -u '+%Y-%m-%d %H:%M UTC')
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$SECONDS
failed=0
{
    echo "lawa CPU benchmarks, $start; $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GB RAM"
    echo "lawa: $LAWA ($(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ', src modified'))"
    echo "load average at start: $load0"
    echo
    echo "== averaging (scripts/bench_average.sh) =="
    FORMATS=${AVG_FORMATS:-"st bin"} RUNS=${AVG_RUNS:-3} BENCH_DIR=${AVG_DIR:-/tmp/lawa-bench} \
        BENCH_OUT=${AVG_OUT:-/dev/shm/lawa-bench-out} scripts/bench_average.sh
    echo
    echo "== eval (scripts/bench_eval.sh) =="
    MODELS=${EVAL_MODELS:-"pythia-70m pythia-160m llama-70m"} WINDOWS=${EVAL_WINDOWS:-8} CTX=${EVAL_CTX:-512} \
        BATCH=${EVAL_BATCH:-4} THREADS=${EVAL_THREADS:-2} REPEATS=${EVAL_REPEATS:-3} \
        BENCH_DIR=${EVAL_DIR:-/tmp/lawa-bench-eval} scripts/bench_eval.sh
} 2>&1 | tee "$LOG" | grep --line-buffered -v -P '^(result|check)\t' || failed=1

echo
echo "== summary ($start, load average $load0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end, $(((SECONDS - t0) / 60)) min $(((SECONDS - t0) % 60)) s) =="
echo "ratio = lawa throughput ÷ reference throughput (higher is better for lawa)"
echo
awk -F'\t' '
    $1 == "result" {
        r = $3 / $4
        printf "| %-42s | %9s %-5s | %9s %-5s | %6.2fx | >= %4.2fx | %-7s |\n", $2, $3, $5, $4, $5, r, $6, (r >= $6) ? "met" : "NOT MET"
    }
    BEGIN {
        printf "| %-42s | %-15s | %-15s | %7s | %8s | %-7s |\n", "benchmark", "lawa", "reference", "ratio", "target", "result"
        printf "|%s|%s|%s|%s|%s|%s|\n", "--------------------------------------------", "-----------------", "-----------------", "---------", "----------", "---------"
    }' "$LOG"
echo
awk -F'\t' '$1 == "check" {printf "check: %-52s %-4s (%s)\n", $2, $3, $4}' "$LOG"
echo "full output: $LOG"
if [[ $failed != 0 ]]; then
    echo "a benchmark script failed: the table above is incomplete (see $LOG)" >&2
    exit 1
fi
! grep -q -P '^check\t[^\t]*\tFAIL' "$LOG"
