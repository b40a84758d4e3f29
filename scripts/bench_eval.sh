#!/usr/bin/env bash
# Benchmark (not a test): `lawa eval` against Hugging Face transformers on PyTorch, CPU, f32.
#
# Same model dirs (Pythia-70M- and 160M-shaped, random weights, generated once with
# transformers), same uint16 tokens, same windows (ctx $CTX, $WINDOWS windows, batch $BATCH),
# same threads ($THREADS). Runs alternate lawa / transformers $REPEATS times per model, each
# after re-reading the model and token files (this VM drops idle page cache within a minute);
# prints median tokens/s of each, the ratio lawa / transformers, and both perplexities, which
# must agree to 1e-4 relative. For scripts/bench.sh it also prints tab-separated lines
#   result<TAB>benchmark<TAB>lawa<TAB>reference<TAB>unit<TAB>target
#   check<TAB>name<TAB>ok|FAIL<TAB>detail
#
#   scripts/bench_eval.sh            # env: PY, BENCH_DIR, CTX, WINDOWS, BATCH, THREADS, REPEATS, LAWA, MODELS
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-/work/pyref/bin/python}
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/lawa-bench-eval}
CTX=${CTX:-512}
WINDOWS=${WINDOWS:-16}
BATCH=${BATCH:-4}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}

# LAWA=path/to/lawa skips the build (e.g. a binary built elsewhere).
if [ -z "${LAWA:-}" ]; then
  cargo build --release --quiet --bin lawa
  LAWA=${CARGO_TARGET_DIR:-target}/release/lawa
fi

mkdir -p "$BENCH_DIR"
"$PY" scripts/bench_eval_hf.py generate "$BENCH_DIR"
# Exactly WINDOWS windows of CTX tokens.
head -c $((CTX * WINDOWS * 2)) "$BENCH_DIR/tokens.bin" > "$BENCH_DIR/bench.bin"

export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cpus; threads $THREADS; ctx $CTX x $WINDOWS windows, batch $BATCH, f32, $REPEATS runs each"
for model in ${MODELS:-pythia-70m pythia-160m llama-70m}; do
  dir="$BENCH_DIR/$model"
  lawa_runs=() hf_runs=()
  for _ in $(seq "$REPEATS"); do
    # Loading is not timed, but a cold cache would still slow the first windows.
    cat "$dir"/* "$BENCH_DIR/bench.bin" >/dev/null
    lawa_runs+=("$("$LAWA" eval "$dir" --tokens "$BENCH_DIR/bench.bin" --ctx "$CTX" --batch "$BATCH" \
      --device cpu --dtype f32 --json 2>/dev/null | tr -d '\n')")
    cat "$dir"/* "$BENCH_DIR/bench.bin" >/dev/null
    hf_runs+=("$("$PY" scripts/bench_eval_hf.py eval "$dir" "$BENCH_DIR/bench.bin" "$CTX" "$BATCH" "$THREADS" 2>/dev/null)")
  done
  "$PY" - "$model" "${#lawa_runs[@]}" "${lawa_runs[@]}" "${hf_runs[@]}" <<'EOF'
import json, statistics, sys
model, n = sys.argv[1], int(sys.argv[2])
lawa = [json.loads(s) for s in sys.argv[3:3 + n]]
hf = [json.loads(s) for s in sys.argv[3 + n:]]
lt = statistics.median(r["tokens_per_s"] for r in lawa)
ht = statistics.median(r["tokens_per_s"] for r in hf)
lp, hp = lawa[0]["ppl"], hf[0]["ppl"]
rel = abs(lp - hp) / hp
print(f"{model}: lawa {lt:.0f} tok/s, transformers ({hf[0]['attn']}) {ht:.0f} tok/s, "
      f"ratio {lt / ht:.2f}x; ppl lawa {lp:.6f} transformers {hp:.6f} (rel diff {rel:.1e}"
      f"{' OK' if rel <= 1e-4 else ' MISMATCH'})")
print("  lawa runs:", ", ".join(f"{r['tokens_per_s']:.0f}" for r in lawa),
      "| transformers runs:", ", ".join(f"{r['tokens_per_s']:.0f}" for r in hf))
print(f"result\teval {model}: lawa vs transformers\t{lt:.0f}\t{ht:.0f}\ttok/s\t1")
print(f"check\teval {model}: same perplexity as transformers\t{'ok' if rel <= 1e-4 else 'FAIL'}\trel diff {rel:.1e}")
EOF
done
