//! Benchmark (not a test): f32 `x · wᵀ` at Pythia-70M Linear shapes (2048 rows: batch 4 x ctx
//! 512), lawa's Linear (`kernels::matmul::linear_t`) against candle's CPU matmul (the `gemm`
//! crate, which dispatches at run time; AVX-512 only with its `x86-v4` feature). Today both are
//! the gemm crate (this shows our wrapper's cost); built at bd61e47 it compared the packed AVX2
//! kernel of our own that the gemm crate replaced (BENCHMARKS.md, "CPU matrix product").
//! Threads from RAYON_NUM_THREADS. Prints GFLOP/s per shape, median of REPEATS runs.
//!
//!   RAYON_NUM_THREADS=2 cargo run --release --example bench_matmul

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use lawa::kernels::matmul;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> candle_core::Result<()> {
    let repeats: usize = std::env::var("REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let rows = 2048;
    // (name, K, N): qkv, dense, h→4h, 4h→h, the vocabulary head.
    let shapes = [
        ("qkv 512->1536", 512, 1536),
        ("dense 512->512", 512, 512),
        ("h->4h 512->2048", 512, 2048),
        ("4h->h 2048->512", 2048, 512),
        ("head 512->50304", 512, 50304),
    ];
    let dev = Device::Cpu;
    println!("threads {}", rayon::current_num_threads());
    for (name, k, n) in shapes {
        let x = Tensor::randn(0f32, 1.0, (rows, k), &dev)?;
        let w = Tensor::randn(0f32, 0.02, (n, k), &dev)?;
        let flops = 2.0 * rows as f64 * k as f64 * n as f64;
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut diff = 0f32;
        for _ in 0..repeats {
            let t = Instant::now();
            let a = matmul::linear_t(&x, &w, None, false)?;
            ours.push(flops / t.elapsed().as_secs_f64() / 1e9);
            let t = Instant::now();
            let b = x.matmul(&w.t()?)?;
            theirs.push(flops / t.elapsed().as_secs_f64() / 1e9);
            diff = (a - b)?
                .abs()?
                .max_all()?
                .to_dtype(DType::F32)?
                .to_scalar::<f32>()?;
        }
        println!(
            "{name:18} lawa {:6.1} GFLOP/s   candle {:6.1} GFLOP/s   ratio candle/lawa {:.2}   max |diff| {diff:.1e}",
            median(ours.clone()),
            median(theirs.clone()),
            median(theirs) / median(ours)
        );
    }
    Ok(())
}
