//! With the `cuda` feature, compiles our CUDA kernels (src/kernels/kernels.cu) with nvcc: a cubin
//! for the GPU the build targets (`CUDA_COMPUTE_CAP`, default 90: H100/H200), so the driver
//! does not JIT them on first use, and PTX for compute 8.0 as a fallback for other GPUs.
//! nvcc is `$NVCC`, else `$CUDA_ROOT/bin/nvcc`, else `nvcc` on the PATH
//! (scripts/build-cuda.sh sets these up). Without the feature this does nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/kernels/kernels.cu");
    for var in ["NVCC", "CUDA_ROOT", "CUDA_COMPUTE_CAP"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var("NVCC")
        .ok()
        .or_else(|| {
            std::env::var("CUDA_ROOT")
                .ok()
                .map(|r| format!("{r}/bin/nvcc"))
        })
        .unwrap_or_else(|| "nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let cap = cap.trim().trim_end_matches(['a', 'f']).replace('.', "");
    let src = Path::new("src/kernels/kernels.cu");
    nvcc_to(
        &nvcc,
        src,
        &out.join("lawa_fused.cubin"),
        &["-cubin", &format!("-arch=sm_{cap}")],
    );
    nvcc_to(
        &nvcc,
        src,
        &out.join("lawa_fused.ptx"),
        &["-ptx", "-arch=compute_80"],
    );
}

fn nvcc_to(nvcc: &str, src: &Path, dst: &Path, mode: &[&str]) {
    // No --use_fast_math: the weighted sum must round exactly like the CPU, and expf/logf
    // must be the accurate ones.
    let output = Command::new(nvcc)
        .args(mode)
        .args(["-O3", "-std=c++17", "-o"])
        .arg(dst)
        .arg(src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {nvcc} (set NVCC or CUDA_ROOT): {e}"));
    if !output.status.success() {
        panic!(
            "{nvcc} failed on {}:\n{}{}",
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
