#!/usr/bin/env bash
# The GPU checks and benchmarks of BENCHMARKS.md, run on the GPU machine from the repo root
# (no Rust there: build the binary here with scripts/build-cuda.sh and carry
# target-cuda/lawa-cuda.xz). Needs python3 with torch, transformers, safetensors, numpy.
#
#   scripts/gpu-check.sh            # env: LAWA (binary), WORK (scratch, ~25 GB), RUNS (3), SKIP
#
# 1. lawa doctor --device cuda: first-use kernel preparation time; every fused kernel against
#    the unfused ops; the GPU weighted sum against the CPU kernel bit for bit; a Pythia-160M-
#    shaped model's logits (f32/f16/bf16) and eval NLL (f32) on the GPU against the CPU.
# 2. Averaging 5 Pythia-1B-shaped fp16 checkpoints (2 GB each), end to end from the page cache:
#    lawa --device cuda, lawa --device cpu and PyTorch's fairseq-style average on the GPU,
#    alternated RUNS times (inputs re-read before each run); lawa GPU output = CPU output (cmp).
# 3. Eval tokens/s at ctx 2048, batch 8, fp16: lawa --device cuda against transformers eager
#    fp16 with SDPA, Pythia-160M and 1B shapes, alternated RUNS times.
# One table is printed last. SKIP="avg eval" leaves parts out.
set -uo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/lawa-gpu}
RUNS=${RUNS:-3}
SKIP=${SKIP:-}
# DEVICE=cpu GPU_BENCH_DEVICE=cpu GPU_BENCH_SHAPE=pythia-160m: a dry run of this script without a GPU.
DEVICE=${DEVICE:-cuda}
EVAL_MODELS=${EVAL_MODELS:-pythia-160m pythia-1b}
TOKENS=${TOKENS:-$((2048 * 64))}
PY=${PY:-python3}
mkdir -p "$WORK"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

# The CUDA libraries come from the Python environment's nvidia-* wheels (scripts/gpu-env.sh).
source scripts/gpu-env.sh

LAWA=${LAWA:-}
if [[ -z $LAWA ]]; then
    if [[ -f target-cuda/lawa-cuda.xz ]]; then
        xz -dc target-cuda/lawa-cuda.xz >"$WORK/lawa" && chmod +x "$WORK/lawa"
        LAWA="$WORK/lawa"
    else
        LAWA=target-cuda/release/lawa
    fi
fi

record() { echo "$1" >>"$RESULTS"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"; } | tee "$WORK/gpu.txt"
echo "cpu: $(nproc) x $(lscpu | sed -n 's/^Model name: *//p')"

# --- 1. doctor --------------------------------------------------------------------------------
if [[ $SKIP != *eval* ]]; then
    "$PY" scripts/gpu_bench.py gen-model "$WORK/pythia-160m" pythia-160m
    "$PY" scripts/gpu_bench.py gen-tokens "$WORK/tokens.bin" "$TOKENS"
fi
doctor_args=(doctor --device "$DEVICE" --json)
[[ -d $WORK/pythia-160m ]] && doctor_args+=(--model "$WORK/pythia-160m" --tokens "$WORK/tokens.bin")
t0=$(now)
"$LAWA" "${doctor_args[@]}" >"$WORK/doctor.json" 2>"$WORK/doctor.err"
echo "doctor exit $? in $(since "$t0") s"; cat "$WORK/doctor.err" | tail -3
record "{\"part\": \"doctor\", \"file\": \"$WORK/doctor.json\"}"
# The second run finds the driver's cache warm.
"$LAWA" doctor --device "$DEVICE" --json >"$WORK/doctor2.json" 2>/dev/null

# --- 2. averaging ----------------------------------------------------------------------------
if [[ $SKIP != *avg* ]]; then
    [[ -f $WORK/ckpts/step5000/model.safetensors ]] || "$PY" scripts/gpu_bench.py gen-ckpts "$WORK/ckpts" 5
    files=("$WORK"/ckpts/step*/model.safetensors)
    OUT=/dev/shm/lawa-gpu-out
    mkdir -p "$OUT"
    for ((r = 1; r <= RUNS; r++)); do
        for tool in lawa-cuda lawa-cpu torch; do
            rm -rf "$OUT/$tool"
            cat "${files[@]}" >/dev/null
            t0=$(now)
            case $tool in
                lawa-cuda) "$LAWA" average "$WORK/ckpts" --steps 1000,2000,3000,4000,5000 --device "$DEVICE" --out "$OUT/$tool" >/dev/null ;;
                lawa-cpu) "$LAWA" average "$WORK/ckpts" --steps 1000,2000,3000,4000,5000 --device cpu --out "$OUT/$tool" >/dev/null ;;
                torch) mkdir -p "$OUT/$tool" && "$PY" scripts/gpu_bench.py avg-torch "$OUT/$tool/model.safetensors" "${files[@]}" >/dev/null ;;
            esac
            rc=$?
            record "{\"part\": \"avg\", \"tool\": \"$tool\", \"rc\": $rc, \"seconds\": $(since "$t0")}"
        done
    done
    if cmp -s "$OUT/lawa-cuda/model.safetensors" "$OUT/lawa-cpu/model.safetensors"; then same=true; else same=false; fi
    record "{\"part\": \"avg-same\", \"bitwise\": $same}"
    "$PY" scripts/gpu_bench.py compare "$OUT/lawa-cuda/model.safetensors" "$OUT/torch/model.safetensors" \
        | sed 's/^{/{"part": "avg-vs-torch", /' >>"$RESULTS"
fi

# --- 3. eval ---------------------------------------------------------------------------------
if [[ $SKIP != *eval* ]]; then
    for model in $EVAL_MODELS; do
        [[ -d $WORK/$model ]] || "$PY" scripts/gpu_bench.py gen-model "$WORK/$model" "$model"
        for ((r = 1; r <= RUNS; r++)); do
            "$LAWA" eval "$WORK/$model" --tokens "$WORK/tokens.bin" --ctx 2048 --batch 8 --device "$DEVICE" \
                --dtype f16 --json 2>>"$WORK/eval.err" | tr -d '\n' \
                | sed "s/^{/{\"part\": \"eval\", \"tool\": \"lawa\", \"model\": \"$model\", /" >>"$RESULTS"
            echo >>"$RESULTS"
            "$PY" scripts/gpu_bench.py eval-torch "$WORK/$model" "$WORK/tokens.bin" 2048 8 2>>"$WORK/eval.err" \
                | sed "s/^{/{\"part\": \"eval\", \"tool\": \"torch\", \"model\": \"$model\", /" >>"$RESULTS"
        done
    done
    tail -3 "$WORK/eval.err"
fi

# --- the table ---------------------------------------------------------------------------------
"$PY" - "$RESULTS" "$(cat "$WORK/gpu.txt")" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
print(f"\n== lawa GPU check on {sys.argv[2]} ==")
for r in rows:
    if r["part"] == "doctor":
        for name in (r["file"], r["file"].replace("doctor.json", "doctor2.json")):
            try:
                d = json.load(open(name))
            except Exception as e:
                print(f"doctor: no report ({e})"); continue
            print(f"doctor ({name.rsplit('/', 1)[-1]}): kernels ready in {d['prepare_seconds']:.1f} s")
        d = json.load(open(r["file"])) if r["file"] else None
        for c in (d or {}).get("checks", []):
            print(f"  {c['name']:<40} {c['against']:<38} {c['diff']:10.3e} <= {c['tolerance']:.1e}  {'ok' if c['pass'] else 'FAIL'}")
avg = {}
for r in rows:
    if r["part"] == "avg" and r["rc"] == 0:
        avg.setdefault(r["tool"], []).append(r["seconds"])
if avg:
    print("\naverage 5 x 2 GB fp16 (Pythia-1B shape), from page cache, median s:")
    med = {t: statistics.median(v) for t, v in avg.items()}
    for t, s in med.items():
        extra = f"  ({med['torch'] / s:.2f}x PyTorch GPU)" if "torch" in med and t != "torch" else ""
        print(f"  {t:<10} {s:7.2f} s  runs {['%.2f' % x for x in avg[t]]}{extra}")
    print("  target: lawa on GPU <= 1.5 s")
for r in rows:
    if r["part"] == "avg-same":
        print(f"  lawa GPU output == CPU output, bit for bit: {r['bitwise']}")
    if r["part"] == "avg-vs-torch":
        print(f"  max |lawa - pytorch|: {r['max_abs_diff']:.3g}")
ev = {}
for r in rows:
    if r["part"] == "eval" and "tokens_per_s" in r:
        ev.setdefault((r["model"], r["tool"]), []).append(r)
if ev:
    print("\neval fp16, ctx 2048, batch 8, median tokens/s:")
    for model in sorted({m for m, _ in ev}, key=lambda m: ("1b" in m, m)):
        l, t = ev.get((model, "lawa")), ev.get((model, "torch"))
        ls = statistics.median(x["tokens_per_s"] for x in l) if l else float("nan")
        ts = statistics.median(x["tokens_per_s"] for x in t) if t else float("nan")
        lp = l[0]["ppl"] if l else float("nan"); tp = t[0]["ppl"] if t else float("nan")
        print(f"  {model:<12} lawa {ls:10.0f}  torch {ts:10.0f}  ratio {ls / ts:.2f}x  (ppl {lp:.2f} vs {tp:.2f})")
    print("  target: >= 1.0x PyTorch")
EOF
