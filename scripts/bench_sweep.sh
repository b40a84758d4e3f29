#!/usr/bin/env bash
# Benchmark (not a test): a uniform LAWA sweep (k = $K) over $N Pythia-70M-shaped f16 checkpoints,
# every window averaged and evaluated on the same tokens (ctx $CTX x $WINDOWS windows, batch
# $BATCH, f32, $THREADS threads), by three tools:
#   sweep      lawa sweep --no-raw (checkpoints read once, windows averaged in memory)
#   per-window lawa average --out DIR, then lawa eval DIR, per window (the explorer's path before
#              it used the sweep engine)
#   pytorch    fairseq-style averaging + transformers eval per window (scripts/bench_sweep_torch.py)
# Runs alternate the tools $REPEATS times, each after re-reading the checkpoints (idle page cache
# is dropped within a minute here); prints median windows/s (wall clock, process start included),
# checkpoint bytes read per window, and checks that the sweep's NLLs equal the per-window path's
# exactly and PyTorch's within 1e-4 relative.
#
# COLD=1 (root only) models checkpoints that do not fit the page cache (a 12B trajectory): the
# page cache is dropped before every run and, for the per-window tools, before every window, so
# every checkpoint read comes from the disk; the sweep reads each checkpoint once anyway.
#
#   scripts/bench_sweep.sh      # env: PY, BENCH_DIR, N, K, CTX, WINDOWS, BATCH, THREADS, REPEATS, LAWA
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/pyref/bin/python}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/lawa-bench-sweep}
N=${N:-20}
K=${K:-5}
CTX=${CTX:-512}
WINDOWS=${WINDOWS:-4}
BATCH=${BATCH:-4}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
if [ -z "${LAWA:-}" ]; then
  cargo build --release --quiet --bin lawa
  LAWA=${CARGO_TARGET_DIR:-target}/release/lawa
fi
LAWA=$(realpath "$LAWA")
RUN="$BENCH_DIR/run"
mkdir -p "$RUN"
"$PY" scripts/bench_sweep_torch.py generate "$RUN" "$N"
head -c $((CTX * WINDOWS * 2)) "$RUN/tokens.bin" >"$BENCH_DIR/bench.bin"
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
ckpt_bytes=$(stat -c %s "$RUN/step1000/model.safetensors")
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'); $(lscpu | grep -o 'avx[0-9a-z_]*' | sort -u | tr '\n' ' ')"
echo "$(nproc) cpus, threads $THREADS; $N checkpoints of $((ckpt_bytes / 1000000)) MB, k=$K, ctx $CTX x $WINDOWS windows, batch $BATCH, f32, $REPEATS runs each"
COLD=${COLD:-0}
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
warm() {
  if [ "$COLD" = 1 ]; then drop; else cat "$RUN"/step*/model.safetensors "$BENCH_DIR/bench.bin" >/dev/null; fi
}
[ "$COLD" = 1 ] && echo "COLD=1: page cache dropped before every run and every per-window window"
now() { date +%s.%N; }
steps=($(ls "$RUN" | sed -n 's/^step//p' | sort -n))
sweep_runs=() window_runs=() torch_runs=() sweep_read=0
for r in $(seq "$REPEATS"); do
  warm
  home=$(mktemp -d)
  t0=$(now)
  LAWA_HOME=$home "$LAWA" sweep "$RUN" --last "$K" --no-raw --tokens "$BENCH_DIR/bench.bin" \
    --ctx "$CTX" --batch "$BATCH" --device cpu --json >"$BENCH_DIR/sweep.jsonl"
  t1=$(now)
  sweep_runs+=("$(echo "$t1 - $t0" | bc)")
  sweep_read=$(tail -1 "$BENCH_DIR/sweep.jsonl" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["summary"]["reads"]["bytes_read"])')
  rm -rf "$home"

  warm
  : >"$BENCH_DIR/window.jsonl"
  t0=$(now)
  for ((e = K - 1; e < ${#steps[@]}; e++)); do
    list=$(IFS=,; echo "${steps[*]:e-K+1:K}")
    [ "$COLD" = 1 ] && drop
    "$LAWA" average "$RUN" --steps "$list" --out "$BENCH_DIR/avg" --force >/dev/null 2>&1
    "$LAWA" eval "$BENCH_DIR/avg" --tokens "$BENCH_DIR/bench.bin" --ctx "$CTX" --batch "$BATCH" \
      --device cpu --dtype f32 --json 2>/dev/null | tr -d '\n' >>"$BENCH_DIR/window.jsonl"
    echo >>"$BENCH_DIR/window.jsonl"
  done
  t1=$(now)
  window_runs+=("$(echo "$t1 - $t0" | bc)")
  rm -rf "$BENCH_DIR/avg"

  warm
  t0=$(now)
  LAWA_BENCH_DROP=$COLD "$PY" scripts/bench_sweep_torch.py sweep "$RUN" "$BENCH_DIR/bench.bin" "$CTX" "$BATCH" "$K" "$THREADS" \
    2>/dev/null >"$BENCH_DIR/torch.json"
  t1=$(now)
  torch_runs+=("$(echo "$t1 - $t0" | bc)")
  echo "run $r: sweep ${sweep_runs[-1]} s, per-window ${window_runs[-1]} s, pytorch ${torch_runs[-1]} s"
done
windows=$((N - K + 1))
"$PY" - "$BENCH_DIR" "$windows" "$K" "$ckpt_bytes" "$sweep_read" "${sweep_runs[*]}" "${window_runs[*]}" "${torch_runs[*]}" <<'EOF'
import json, statistics, sys
d, windows, k, size, sweep_read = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
med = lambda s: statistics.median(float(x) for x in s.split())
sweep_s, window_s, torch_s = med(sys.argv[6]), med(sys.argv[7]), med(sys.argv[8])
sweep = [json.loads(l) for l in open(f"{d}/sweep.jsonl") if '"summary"' not in l]
window = [json.loads(l) for l in open(f"{d}/window.jsonl") if l.strip()]
torch = json.load(open(f"{d}/torch.json"))["mean_nll"]
by_end = {r["end_step"]: r["mean_nll"] for r in sweep}
ends = sorted(by_end)
assert len(ends) == windows == len(window) == len(torch), (len(ends), windows, len(window), len(torch))
exact = all(by_end[e] == w["mean_nll"] for e, w in zip(ends, window))
rel = max(abs(by_end[e] - torch[str(e)]) / abs(torch[str(e)]) for e in ends)
print(f"{'tool':<11} {'windows/s':>10} {'MB read/window':>15} {'x pytorch':>10}")
for name, s, read in [("sweep", sweep_s, sweep_read / windows), ("per-window", window_s, (k + 1) * size),
                      ("pytorch", torch_s, (k + 1) * size)]:
    print(f"{name:<11} {windows / s:>10.3f} {read / 1e6:>15.1f} {torch_s / s:>10.2f}")
print(f"check: sweep NLL == per-window NLL exactly: {'ok' if exact else 'FAIL'}; "
      f"max rel diff vs PyTorch {rel:.2e} ({'ok' if rel <= 1e-4 else 'FAIL'})")
sys.exit(0 if exact and rel <= 1e-4 else 1)
EOF
