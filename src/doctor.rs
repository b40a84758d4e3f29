//! Self-checks of the compute path on a device (`lawa doctor`): each fused kernel against the
//! unfused ops it replaces (and the GPU weighted sum against the CPU kernel, bit for bit), and,
//! given a model, its logits and eval NLL on the device against the CPU in f32.
//!
//! On the CPU this checks the CPU implementations of the fused algorithms; on a GPU it is the
//! check that the CUDA kernels compute what the tests prove the CPU code computes.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use crate::checkpoint::DType as CkDType;
use crate::eval::{self, EvalData, EvalOptions};
use crate::kernels::attention::flash::{self, CausalAttention, HEAD_SIZES};
use crate::kernels::attention::reference::{self, causal_mask};
use crate::kernels::weighted_sum::{self, DeviceSum, Input};
use crate::kernels::{self, Fused, NllKernel};
use crate::progress::Reporter;

/// One check: what was compared, the largest difference, and the bound it must stay within.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    pub name: String,
    /// What the result is compared with.
    pub against: String,
    /// Largest difference found (absolute unless `against` says relative).
    pub diff: f64,
    pub tolerance: f64,
    pub pass: bool,
}

impl Check {
    fn new(name: String, against: &str, diff: f64, tolerance: f64) -> Self {
        Self {
            name,
            against: against.into(),
            diff,
            tolerance,
            // NaN fails.
            pass: diff <= tolerance,
        }
    }
}

/// How long preparing the device took, and the checks.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub device: String,
    pub cuda_built: bool,
    pub fused_enabled: bool,
    pub prepare_seconds: f64,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

type Result<T> = candle_core::Result<T>;

/// Engine errors (kernel, eval) as the candle errors the checks return.
fn msg(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// Runs the kernel checks on `device` with our GPU kernels as `fused` allows (and the model
/// checks when `model` is given).
pub fn run(
    device: &Device,
    fused: Fused,
    model: Option<(&Path, &EvalData)>,
    reporter: &Reporter,
) -> Result<Report> {
    let t0 = Instant::now();
    crate::device::prepare(device, reporter)?;
    let prepare_seconds = t0.elapsed().as_secs_f64();
    let mut checks = weighted_sum_checks(device, fused)?;
    checks.extend(attention_checks(device)?);
    checks.extend(nll_checks(device, fused)?);
    if let Some((dir, data)) = model {
        checks.extend(model_checks(device, fused, dir, data, reporter)?);
    }
    Ok(Report {
        device: crate::device::describe(device).into(),
        cuda_built: kernels::built_with_cuda(),
        fused_enabled: fused == Fused::On,
        prepare_seconds,
        checks,
    })
}

fn random_bytes(n: usize, dtype: CkDType, seed: u64) -> Vec<u8> {
    let mut rng = crate::train::rng::Pcg32::new(seed, 0);
    let xs: Vec<f32> = (0..n).map(|_| (0.02 * rng.normal()) as f32).collect();
    match dtype {
        CkDType::F16 => bytemuck::cast_slice(
            &xs.iter()
                .map(|&x| half::f16::from_f32(x))
                .collect::<Vec<_>>(),
        )
        .to_vec(),
        CkDType::BF16 => bytemuck::cast_slice(
            &xs.iter()
                .map(|&x| half::bf16::from_f32(x))
                .collect::<Vec<_>>(),
        )
        .to_vec(),
        _ => bytemuck::cast_slice(&xs).to_vec(),
    }
}

/// The device sum against the CPU kernel: bitwise on a GPU with the fused kernel (same
/// arithmetic, same order), within rounding of the output dtype for candle's unfused ops.
fn weighted_sum_checks(device: &Device, fused: Fused) -> Result<Vec<Check>> {
    use CkDType::*;
    // 5 M + 3 elements crosses the GPU sum's 4 M-element sub-chunks; 10 inputs chain two launches.
    let n = (5 << 20) + 3;
    let cases: [(&str, Vec<CkDType>, CkDType); 3] = [
        ("5 x f16 -> f16", vec![F16; 5], F16),
        (
            "10 x f16/bf16/f32 -> bf16",
            vec![F16, BF16, F32, F16, BF16, F32, F16, BF16, F32, F16],
            BF16,
        ),
        ("3 x f32 -> f32", vec![F32; 3], F32),
    ];
    let mut sum = DeviceSum::new(device, fused).map_err(msg)?;
    let mut out = Vec::new();
    for (label, dtypes, out_dtype) in cases {
        let data: Vec<Vec<u8>> = dtypes
            .iter()
            .enumerate()
            .map(|(i, &d)| random_bytes(n, d, 7 + i as u64))
            .collect();
        let inputs: Vec<Input> = data
            .iter()
            .zip(&dtypes)
            .map(|(b, &dtype)| Input { bytes: b, dtype })
            .collect();
        let k = inputs.len();
        let weights: Vec<f32> = (0..k)
            .map(|i| (i + 1) as f32 / (k * (k + 1) / 2) as f32)
            .collect();
        let mut cpu = vec![0u8; n * out_dtype.size_in_bytes()];
        weighted_sum::weighted_sum_cpu(&inputs, &weights, out_dtype, &mut cpu).map_err(msg)?;
        let mut dev = vec![0u8; cpu.len()];
        sum.run(&inputs, &weights, out_dtype, &mut dev)
            .map_err(msg)?;
        let bitwise = device.is_cuda() && kernels::built_with_cuda() && fused == Fused::On;
        let (diff, tol, against) = if bitwise {
            let differing = cpu
                .chunks(out_dtype.size_in_bytes())
                .zip(dev.chunks(out_dtype.size_in_bytes()))
                .filter(|(a, b)| a != b)
                .count();
            (
                differing as f64,
                0.0,
                "CPU kernel, elements not bit-identical",
            )
        } else {
            let as_tensor = |b: &[u8]| {
                Tensor::from_raw_buffer(
                    b,
                    out_dtype.to_candle().expect("float"),
                    &[n],
                    &Device::Cpu,
                )
            };
            let tol = match out_dtype {
                BF16 => 2e-3,
                F16 => 2e-4,
                _ => 1e-6,
            };
            (
                crate::kernels::max_abs_diff(&as_tensor(&cpu)?, &as_tensor(&dev)?)?,
                tol,
                "CPU kernel, max |diff|",
            )
        };
        out.push(Check::new(
            format!("weighted sum {label}"),
            against,
            diff,
            tol,
        ));
    }
    Ok(out)
}

/// Fused attention (the CUDA kernel on a GPU, its CPU implementation on the CPU) against the
/// unfused ops in f32 on the same device. The tolerance is the rounding of the probabilities
/// and output to the input dtype (inputs ~ N(0, 1)).
fn attention_checks(device: &Device) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for &hs in &HEAD_SIZES {
        for (dtype, tol) in [(DType::F16, 4e-3), (DType::BF16, 3e-2)] {
            let t = 300; // not a multiple of any tile
            let mk = || Tensor::randn(0f32, 1.0, (2, 2, t, hs), device)?.to_dtype(dtype);
            let (q, k, v) = (mk()?, mk()?, mk()?);
            let scale = 1.0 / (hs as f64).sqrt();
            let fused = match flash::causal_attention(&q, &k, &v, scale)? {
                Some(y) => y,
                None => q.apply_op3_no_bwd(
                    &k,
                    &v,
                    &CausalAttention {
                        scale: scale as f32,
                    },
                )?,
            };
            let f32 = |x: &Tensor| x.to_dtype(DType::F32);
            let naive = reference::causal_attention(
                &f32(&q)?,
                &f32(&k)?,
                &f32(&v)?,
                &causal_mask(t, device)?,
                scale,
            )?;
            out.push(Check::new(
                format!("attention hs {hs} {dtype:?}"),
                "unfused f32 ops, max |diff|",
                crate::kernels::max_abs_diff(&fused, &naive)?,
                tol,
            ));
        }
    }
    Ok(out)
}

/// Fused NLL against logsumexp from candle ops in f32, on logits of a Pythia-sized vocabulary.
fn nll_checks(device: &Device, fused: Fused) -> Result<Vec<Check>> {
    let (n, v) = (64, 50_304);
    let logits = Tensor::randn(0f32, 4.0, (n, v), device)?;
    let targets = Tensor::arange(0u32, n as u32, device)?.affine(751.0, 3.0)?;
    let mut out = Vec::new();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let l = logits.to_dtype(dtype)?;
        let unavailable = || candle_core::Error::Msg("the fused NLL is not available".into());
        if NllKernel::choose(device, fused) != NllKernel::Fused {
            return Err(unavailable());
        }
        let fused = kernels::nll::token_nll(&l, &targets)?.ok_or_else(unavailable)?;
        let ops = eval::nll::token_nll_ops(&l, &targets)?;
        out.push(Check::new(
            format!("token NLL {dtype:?}"),
            "unfused f32 ops, max |diff|",
            crate::kernels::max_abs_diff(&fused, &ops)?,
            2e-4,
        ));
    }
    Ok(out)
}

/// The model on `device` in f32, f16 and bf16 against the CPU in f32: last-position logits of a
/// short batch (differences relative to the largest |logit|) and, in f32, the eval NLL.
fn model_checks(
    device: &Device,
    fused: Fused,
    dir: &Path,
    data: &EvalData,
    reporter: &Reporter,
) -> Result<Vec<Check>> {
    let mut cpu_opts = EvalOptions {
        ctx: None,
        max_tokens: None,
        batch: 4,
        device: Device::Cpu,
        dtype: Some(DType::F32),
        fused,
    };
    let cpu_model = eval::load_model(dir, &cpu_opts).map_err(msg)?;
    // Short windows: the CPU reference of a large model must stay quick.
    let ctx = 128.min(cpu_model.config.max_position_embeddings);
    cpu_opts.ctx = Some(ctx);
    cpu_opts.max_tokens = Some(8 * ctx);
    let opts = |device: &Device, dtype| EvalOptions {
        device: device.clone(),
        dtype: Some(dtype),
        ..cpu_opts.clone()
    };
    let tokens = eval::load_tokens(data, dir, cpu_opts.max_tokens).map_err(msg)?;
    let len = ctx.min(tokens.ids.len());
    let ids = &tokens.ids[..len];
    let logits = |m: &crate::model::LoadedModel, dev: &Device| -> Result<Tensor> {
        let x = Tensor::from_slice(ids, (1, len), dev)?;
        m.model
            .forward(&x)?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)
    };
    let reference = logits(&cpu_model, &Device::Cpu)?;
    let scale = reference.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64;
    let mut out = Vec::new();
    // f32 differs by summation order only; half dtypes round every activation (f16: 11-bit,
    // bf16: 8-bit mantissa) through every layer.
    for (dtype, tol) in [(DType::F32, 1e-4), (DType::F16, 3e-2), (DType::BF16, 1e-1)] {
        let m = eval::load_model(dir, &opts(device, dtype)).map_err(msg)?;
        let d = crate::kernels::max_abs_diff(&logits(&m, device)?, &reference)? / scale.max(1e-12);
        out.push(Check::new(
            format!("model logits {dtype:?}"),
            "CPU f32, max |diff| / max |logit|",
            d,
            tol,
        ));
    }
    let on_cpu = eval::evaluate(&cpu_model, &tokens, &cpu_opts, reporter).map_err(msg)?;
    let m = eval::load_model(dir, &opts(device, DType::F32)).map_err(msg)?;
    let on_dev = eval::evaluate(&m, &tokens, &opts(device, DType::F32), reporter).map_err(msg)?;
    out.push(Check::new(
        "eval mean NLL F32".into(),
        "CPU f32, relative",
        (on_dev.mean_nll - on_cpu.mean_nll).abs() / on_cpu.mean_nll.abs().max(1e-12),
        1e-4,
    ));
    Ok(out)
}
