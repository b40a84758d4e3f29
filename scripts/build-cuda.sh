#!/usr/bin/env bash
# Builds lawa with the `cuda` feature on this machine (no GPU or CUDA install needed) for an
# NVIDIA H100/H200 machine that has the driver but no Rust:
#   1. assembles a CUDA 13.0 toolchain from PyPI wheels into $CUDA_PREFIX (default /tmp/cuda13)
#      with ../shared/gpu/setup-cuda-toolkit.sh (once);
#   2. cargo build --release --features cuda in its own target dir (target-cuda), so the normal
#      build is not invalidated; CUDA_COMPUTE_CAP (default 90) picks the GPU the cubins are for;
#   3. writes target-cuda/lawa-cuda.xz: the stripped binary is ~73 MB (candle's kernels), too big
#      to carry to the GPU machine as is; scripts/gpu-check.sh unpacks it there.
# There: `source scripts/gpu-env.sh` puts the CUDA libraries of the Python environment on the
# library path, then run the binary (or scripts/gpu-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${CUDA_PREFIX:-/tmp/cuda13}
SETUP=${CUDA_SETUP:-../shared/gpu/setup-cuda-toolkit.sh}
if [[ ! -f $PREFIX/env.sh ]]; then
    [[ -f $SETUP ]] || { echo "error: no CUDA toolchain in $PREFIX and no $SETUP to make one" >&2; exit 1; }
    cargo fetch
    bash "$SETUP" "$PREFIX"
fi
# shellcheck disable=SC1091
source "$PREFIX/env.sh"
cargo build --release --features cuda --target-dir target-cuda --bin lawa
xz -T0 -6 -c target-cuda/release/lawa >target-cuda/lawa-cuda.xz.tmp
mv target-cuda/lawa-cuda.xz.tmp target-cuda/lawa-cuda.xz
ls -l target-cuda/release/lawa target-cuda/lawa-cuda.xz
