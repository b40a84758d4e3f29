//! Log-softmax based per-token losses, always in f32 whatever the model dtype.
//! Each is a small function over `[N, V]` logits so that a fused kernel can replace it.

use candle_core::{DType, Result, Tensor, D};

use crate::kernels::{Fused, NllKernel};

/// `-log softmax(logits)[target]` per row: `logits [N, V]`, `targets [N]` u32 → `[N]` f32.
/// The fused one-pass kernel ([`crate::kernels::nll::token_nll`]) where it applies, else candle
/// ops. A model's evaluation uses [`token_nll_with`] and the kernel the model chose.
pub fn token_nll(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    token_nll_with(
        NllKernel::choose(logits.device(), Fused::On),
        logits,
        targets,
    )
}

/// [`token_nll`] on `kernel`.
pub fn token_nll_with(kernel: NllKernel, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if kernel == NllKernel::Fused {
        if let Some(nll) = crate::kernels::nll::token_nll(logits, targets)? {
            return Ok(nll);
        }
    }
    token_nll_ops(logits, targets)
}

/// [`token_nll`] from candle ops (any device): `logsumexp(row) - row[target]`.
pub fn token_nll_ops(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let lse = (logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + &max)?;
    let picked = logits.gather(&targets.unsqueeze(1)?.contiguous()?, 1)?;
    (lse - picked)?.squeeze(1)
}

/// Per-row `KL(P_other ‖ P_model)` and whether both argmaxes agree (1.0 / 0.0), both `[N]` f32,
/// from logits `[N, V]` of the two models on the same positions.
pub fn kl_and_top1(model_logits: &Tensor, other_logits: &Tensor) -> Result<(Tensor, Tensor)> {
    let lp_model = candle_nn::ops::log_softmax(&model_logits.to_dtype(DType::F32)?, D::Minus1)?;
    let lp_other = candle_nn::ops::log_softmax(&other_logits.to_dtype(DType::F32)?, D::Minus1)?;
    let kl = (lp_other.exp()? * (&lp_other - &lp_model)?)?.sum(D::Minus1)?;
    let agree = lp_model
        .argmax(D::Minus1)?
        .eq(&lp_other.argmax(D::Minus1)?)?
        .to_dtype(DType::F32)?;
    Ok((kl, agree))
}

/// Perplexity from mean NLL in nats.
pub fn perplexity(mean_nll: f64) -> f64 {
    mean_nll.exp()
}

/// Bits per UTF-8 byte: total NLL (nats) in bits over the bytes of the evaluated span.
pub fn bits_per_byte(total_nll: f64, bytes: usize) -> Option<f64> {
    (bytes > 0).then(|| total_nll / std::f64::consts::LN_2 / bytes as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], n: usize) -> Tensor {
        Tensor::from_slice(v, (n, v.len() / n), &Device::Cpu).unwrap()
    }

    #[test]
    fn nll_matches_hand_computation() {
        // Row 0: uniform over 2 → ln 2. Row 1: logits [0, ln 3] over 2, target 1 → -ln(3/4).
        let logits = Tensor::cat(&[t(&[1.0, 1.0], 1), t(&[0.0, 3f32.ln()], 1)], 0).unwrap();
        let targets = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        let nll: Vec<f32> = token_nll(&logits, &targets).unwrap().to_vec1().unwrap();
        assert!((nll[0] - 2f32.ln()).abs() < 1e-6);
        assert!((nll[1] + 0.75f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn fused_cpu_path_equals_the_ops_version_in_every_dtype() {
        let logits = Tensor::randn(0f32, 3.0, (7, 1000), &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 999, 5, 17, 500, 3, 3], &Device::Cpu).unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let l = logits.to_dtype(dtype).unwrap();
            let a: Vec<f32> = token_nll(&l, &targets).unwrap().to_vec1().unwrap();
            let b: Vec<f32> = token_nll_ops(&l, &targets).unwrap().to_vec1().unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-5, "{dtype:?}: {x} vs {y}");
            }
        }
        let bad = Tensor::new(&[0u32, 1000, 0, 0, 0, 0, 0], &Device::Cpu).unwrap();
        let err = token_nll(&logits, &bad).unwrap_err().to_string();
        assert!(err.contains("target 1000"), "{err}");
        let short = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        assert!(token_nll(&logits, &short).is_err());
    }

    #[test]
    fn nll_is_stable_for_large_logits_and_half_input() {
        let logits = t(&[1000.0, 0.0, -1000.0], 1).to_dtype(DType::BF16).unwrap();
        let targets = Tensor::new(&[1u32], &Device::Cpu).unwrap();
        let nll: Vec<f32> = token_nll(&logits, &targets).unwrap().to_vec1().unwrap();
        assert!((nll[0] - 1000.0).abs() < 1e-3, "{}", nll[0]);
    }

    #[test]
    fn kl_is_zero_for_equal_and_matches_formula() {
        let a = t(&[0.0, 1.0, 2.0], 1);
        let (kl, agree) = kl_and_top1(&a, &a).unwrap();
        assert!(kl.to_vec1::<f32>().unwrap()[0].abs() < 1e-7);
        assert_eq!(agree.to_vec1::<f32>().unwrap(), vec![1.0]);
        // P_other = (1/2, 1/2), P_model = (1/4, 3/4): KL = 1/2 ln 2 + 1/2 ln(2/3).
        let model = t(&[0.0, 3f32.ln()], 1);
        let other = t(&[5.0, 5.0], 1);
        let (kl, _) = kl_and_top1(&model, &other).unwrap();
        let want = 0.5 * 2f32.ln() + 0.5 * (2.0f32 / 3.0).ln();
        assert!((kl.to_vec1::<f32>().unwrap()[0] - want).abs() < 1e-6);
        let (_, agree) = kl_and_top1(&t(&[0.0, 1.0], 1), &t(&[1.0, 0.0], 1)).unwrap();
        assert_eq!(agree.to_vec1::<f32>().unwrap(), vec![0.0]);
    }

    #[test]
    fn bpb_and_ppl() {
        assert!((perplexity(2f64.ln()) - 2.0).abs() < 1e-12);
        assert_eq!(bits_per_byte(8.0 * std::f64::consts::LN_2, 4), Some(2.0));
        assert_eq!(bits_per_byte(1.0, 0), None);
    }
}
