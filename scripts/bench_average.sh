#!/usr/bin/env bash
# Benchmark of `lawa average` (see BENCHMARKS.md). Not a test.
#
# Generates K=5 checkpoints of a ~0.56 GB fp16 GPT-NeoX-shaped model (14 layers, hidden 1024,
# vocab 50304) as safetensors and as PyTorch .bin, then for each format alternates, RUNS times:
#   (a) the read floor: `cat` of the five weights files (from page cache),
#   (b) `lawa average` (release build, CPU),
#   (c) scripts/bench_average_torch.py (fairseq-style: load each, accumulate fp32, save_file).
# Before every timed run the files are read once, so each tool starts from a warm page cache.
# Prints medians, throughput relative to the floor, and peak RSS (/usr/bin/time), and checks that
# both tools produced the same average. For scripts/bench.sh (which runs this and bench_eval.sh in
# one go) it also prints tab-separated lines
#   result<TAB>benchmark<TAB>lawa<TAB>reference<TAB>unit<TAB>target   (throughputs; target: the
#                                                                     least lawa / reference)
#   check<TAB>name<TAB>ok|FAIL<TAB>detail
#
# Env: PY (python with torch+safetensors+numpy, default /work/pyref/bin/python), BENCH_DIR
# (default /tmp/lawa-bench, ~6.5 GB), BENCH_OUT (where outputs go, default BENCH_DIR; a tmpfs
# such as /dev/shm/lawa-bench-out takes a slow disk out of the comparison), RUNS (3),
# FORMATS ("st bin"), LAWA (a built binary; default: `cargo build --release`), KEEP_OUT=1 to keep
# the outputs (by default each format's two outputs are deleted once compared).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/pyref/bin/python}
DIR=${BENCH_DIR:-/tmp/lawa-bench}
RUNS=${RUNS:-3}
FORMATS=${FORMATS:-"st bin"}
OUT=${BENCH_OUT:-$DIR}
mkdir -p "$OUT"
STEPS="1000,2000,3000,4000,5000"

if [[ -z "${LAWA:-}" ]]; then
    cargo build --release --bin lawa >&2
    LAWA="${CARGO_TARGET_DIR:-target}/release/lawa"
fi

if [[ ! -f "$DIR/done" ]]; then
    echo "generating checkpoints in $DIR ..." >&2
    mkdir -p "$DIR"
    "$PY" - "$DIR" <<'EOF'
import json, os, sys
import numpy as np
import torch
from safetensors.numpy import save_file

root = sys.argv[1]
H, L, V, CTX = 1024, 14, 50304, 2048
shapes = {"gpt_neox.embed_in.weight": (V, H)}
for i in range(L):
    p = f"gpt_neox.layers.{i}."
    shapes.update({
        p + "input_layernorm.weight": (H,), p + "input_layernorm.bias": (H,),
        p + "post_attention_layernorm.weight": (H,), p + "post_attention_layernorm.bias": (H,),
        p + "attention.query_key_value.weight": (3 * H, H), p + "attention.query_key_value.bias": (3 * H,),
        p + "attention.dense.weight": (H, H), p + "attention.dense.bias": (H,),
        p + "mlp.dense_h_to_4h.weight": (4 * H, H), p + "mlp.dense_h_to_4h.bias": (4 * H,),
        p + "mlp.dense_4h_to_h.weight": (H, 4 * H), p + "mlp.dense_4h_to_h.bias": (H,),
    })
shapes.update({"gpt_neox.final_layer_norm.weight": (H,), "gpt_neox.final_layer_norm.bias": (H,),
               "embed_out.weight": (V, H)})
mask = np.tril(np.ones((CTX, CTX), dtype=bool)).reshape(1, 1, CTX, CTX)
inv_freq = (1.0 / (10000 ** (np.arange(0, 64, 2, dtype=np.float32) / 64))).astype(np.float32)
for k, step in enumerate([1000, 2000, 3000, 4000, 5000]):
    rng = np.random.default_rng(step)
    sd = {n: (0.02 * rng.standard_normal(s, dtype=np.float32)).astype(np.float16) for n, s in shapes.items()}
    for i in range(L):
        sd[f"gpt_neox.layers.{i}.attention.bias"] = mask
        sd[f"gpt_neox.layers.{i}.attention.masked_bias"] = np.array(-1e9, dtype=np.float32)
        sd[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = inv_freq
    cfg = {"model_type": "gpt_neox", "hidden_size": H, "num_hidden_layers": L, "torch_dtype": "float16"}
    for fmt in ("st", "bin"):
        d = os.path.join(root, fmt, f"step{step}")
        os.makedirs(d, exist_ok=True)
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        if fmt == "st":
            save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        else:
            torch.save({n: torch.from_numpy(v) for n, v in sd.items()}, os.path.join(d, "pytorch_model.bin"))
    print("step", step, file=sys.stderr)
EOF
    touch "$DIR/done"
fi

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# timed LABEL CMD...: runs CMD under /usr/bin/time, appends "seconds maxrss_kb cpu_seconds" to
# $DIR/LABEL.times (CPU = user + system, the measure that a loaded machine distorts least)
timed() {
    local label=$1
    shift
    /usr/bin/time -f "%e %M %U %S" -o "$DIR/.t" "$@" >/dev/null
    awk '{print $1, $2, $3 + $4}' "$DIR/.t" >>"$DIR/$label.times"
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GB RAM; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for fmt in $FORMATS; do
    if [[ $fmt == st ]]; then name=model.safetensors; else name=pytorch_model.bin; fi
    files=()
    for s in ${STEPS//,/ }; do files+=("$DIR/$fmt/step$s/$name"); done
    bytes=$(cat "${files[@]}" | wc -c)
    one=$(stat -c %s "${files[0]}")
    rm -f "$DIR"/*.times
    for ((r = 1; r <= RUNS; r++)); do
        cat "${files[@]}" >/dev/null
        timed floor cat "${files[@]}"
        # Outputs are removed untimed: neither tool pays for deleting the previous one.
        rm -rf "$OUT/out_lawa_$fmt" "$OUT/out_torch_$fmt.safetensors"
        cat "${files[@]}" >/dev/null
        timed lawa "$LAWA" average "$DIR/$fmt" --steps "$STEPS" --device cpu --out "$OUT/out_lawa_$fmt"
        cat "${files[@]}" >/dev/null
        timed torch "$PY" scripts/bench_average_torch.py "$OUT/out_torch_$fmt.safetensors" "${files[@]}"
        echo "run $r/$RUNS done" >&2
    done
    echo
    echo "format $fmt: 5 x $((one / 1000000)) MB = $((bytes / 1000000)) MB in, runs: $RUNS"
    printf '| %-28s | %9s | %11s | %12s | %10s | %13s |\n' tool "median s" "GB/s in" "vs floor" "CPU s" "peak RSS MB"
    printf '|%s|%s|%s|%s|%s|%s|\n' ------------------------------ ----------- ------------- -------------- ------------ ---------------
    floor_s=$(cut -d' ' -f1 "$DIR/floor.times" | median)
    for t in floor lawa torch; do
        s=$(cut -d' ' -f1 "$DIR/$t.times" | median)
        rss=$(cut -d' ' -f2 "$DIR/$t.times" | sort -g | tail -1)
        cpu=$(cut -d' ' -f3 "$DIR/$t.times" | median)
        case $t in
            floor) label="read floor (cat)" ;;
            lawa) label="lawa average" ;;
            torch) label="pytorch (fairseq-style)" ;;
        esac
        awk -v l="$label" -v s="$s" -v b="$bytes" -v f="$floor_s" -v r="$rss" -v c="$cpu" \
            'BEGIN {printf "| %-28s | %9.2f | %11.2f | %11.2fx | %10.2f | %13.0f |\n", l, s, b/s/1e9, f/s, c, r/1024}'
    done
    lawa_s=$(cut -d' ' -f1 "$DIR/lawa.times" | median)
    torch_s=$(cut -d' ' -f1 "$DIR/torch.times" | median)
    lawa_rss=$(cut -d' ' -f2 "$DIR/lawa.times" | sort -g | tail -1)
    awk -v a="$lawa_s" -v b="$torch_s" -v r="$lawa_rss" -v one="$one" \
        'BEGIN {printf "lawa is %.2fx faster than pytorch; lawa peak RSS = %.2fx one checkpoint\n", b/a, r*1024/one}'
    # Machine-readable lines for scripts/bench.sh (throughputs in GB/s of input).
    awk -v a="$lawa_s" -v f="$floor_s" -v t="$torch_s" -v b="$bytes" -v fmt="$fmt" -v r="$lawa_rss" -v one="$one" 'BEGIN {
        printf "result\taverage %s: lawa vs read floor (cat)\t%.2f\t%.2f\tGB/s\t0.9\n", fmt, b/a/1e9, b/f/1e9
        printf "result\taverage %s: lawa vs PyTorch script\t%.2f\t%.2f\tGB/s\t2\n", fmt, b/a/1e9, b/t/1e9
        printf "check\taverage %s: lawa peak RSS <= 1.2x one checkpoint\t%s\t%.2fx\n", fmt, (r*1024 <= 1.2*one) ? "ok" : "FAIL", r*1024/one
    }'
    # Same average both ways (fairseq divides after summing; lawa pre-weights): tiny differences only.
    "$PY" - "$OUT/out_lawa_$fmt/model.safetensors" "$OUT/out_torch_$fmt.safetensors" "$fmt" <<'EOF'
import sys
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys(), "different tensors"
worst = max(float(abs(a[k].astype("float32") - b[k].astype("float32")).max()) for k in a)
print(f"max |lawa - pytorch| over all tensors: {worst:.3g}")
# Rounding differences are one f16 step (~6e-5 at these magnitudes); 1e-3 means a wrong average.
print(f"check\taverage {sys.argv[3]}: same average as PyTorch\t{'ok' if worst <= 1e-3 else 'FAIL'}\tmax diff {worst:.3g}")
EOF
    # On a tmpfs the outputs are RAM: drop them once compared.
    [[ -n "${KEEP_OUT:-}" ]] || rm -rf "$OUT/out_lawa_$fmt" "$OUT/out_torch_$fmt.safetensors"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
