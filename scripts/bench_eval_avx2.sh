#!/usr/bin/env bash
# Benchmark (not a test): scripts/bench_eval.sh on the AVX2/FMA path only, on any x86 machine:
# lawa built without the `avx512` feature (the gemm crate then has only its AVX2 kernels) and
# transformers with MKL, ATen and oneDNN held to AVX2. A proxy for an AVX2-only CPU (such as
# the AMD EPYC machines of this kind), not that CPU: the core and MKL's choices differ there.
#
#   scripts/bench_eval_avx2.sh        # env as scripts/bench_eval.sh (REPEATS, MODELS, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${LAWA:-}" ]; then
  cargo build --release --quiet --no-default-features --target-dir target-avx2 --bin lawa
  export LAWA=target-avx2/release/lawa
fi
export MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
echo "AVX2 path only: lawa without avx512 ($LAWA); transformers with MKL/ATen/oneDNN held to AVX2"
exec scripts/bench_eval.sh "$@"
