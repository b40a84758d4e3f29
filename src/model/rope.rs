//! Rotary position embeddings shared by every RoPE family: the inverse frequencies (plain,
//! `linear` and `llama3` scaling, computed in f32 as transformers does) and the cos/sin tables
//! of one forward pass, built for the positions that pass uses (never for
//! `max_position_embeddings`, which a config may set to anything).

use candle_core::{DType, Device, Result, Tensor, D};

/// `rope_scaling` / `rope_parameters` variants that change the frequencies.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// `linear`: every frequency divided by `factor`.
    Linear {
        factor: f64,
    },
    /// `llama3`: long wavelengths divided by `factor`, short ones kept, a smooth blend between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// The inverse frequencies of a rotary embedding over `ndims` dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    inv_freq: Vec<f32>,
    ndims: usize,
}

impl Rope {
    /// `inv_freq = 1 / base^(2i / ndims)` in f32 (transformers' default), then `scaling`.
    pub fn new(ndims: usize, base: f64, scaling: &RopeScaling) -> Rope {
        let half = ndims / 2;
        let mut inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / (base as f32).powf((2 * i) as f32 / ndims as f32))
            .collect();
        match *scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                for f in &mut inv_freq {
                    *f /= factor as f32;
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                // transformers' `_compute_llama3_parameters`, op for op in f32.
                let (factor, low, high, old) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                    old as f32,
                );
                let low_wavelen = old / low;
                let high_wavelen = old / high;
                for f in &mut inv_freq {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    let scaled = if wavelen > low_wavelen {
                        *f / factor
                    } else {
                        *f
                    };
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    if medium {
                        let smooth = (old / wavelen - low) / (high - low);
                        *f = (1.0 - smooth) * scaled / factor + smooth * scaled;
                    } else {
                        *f = scaled;
                    }
                }
            }
        }
        Rope { inv_freq, ndims }
    }

    pub fn ndims(&self) -> usize {
        self.ndims
    }

    /// The cos/sin tables for positions `0..t`, `[t, ndims / 2]`, in `dtype` on `device`.
    pub fn tables(&self, t: usize, dtype: DType, device: &Device) -> Result<RopeTables> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for pos in 0..t {
            for f in &self.inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok(RopeTables {
            ndims: self.ndims,
            cos: Tensor::from_vec(cos, (t, half), device)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, (t, half), device)?.to_dtype(dtype)?,
        })
    }
}

/// cos/sin of one forward pass.
#[derive(Clone, Debug)]
pub struct RopeTables {
    ndims: usize,
    cos: Tensor,
    sin: Tensor,
}

impl RopeTables {
    /// The rotated dims per head (0: no rotary).
    pub fn ndims(&self) -> usize {
        self.ndims
    }

    /// The cos and sin tables as f32 values, `[T, ndims / 2]` row-major (the CPU kernels').
    pub fn cpu_f32(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        let flat = |x: &Tensor| x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
        Ok((flat(&self.cos)?, flat(&self.sin)?))
    }

    /// Rotates (rotate-half) the first `ndims` dims of every head of `x: [B, H, T, head_size]`;
    /// `fused`: candle's rope kernel, else differentiable ops.
    pub fn apply(&self, x: &Tensor, fused: bool) -> Result<Tensor> {
        if self.ndims == 0 {
            return Ok(x.clone());
        }
        let (_, _, t, head_size) = x.dims4()?;
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        let rotate = |xr: &Tensor| {
            if fused {
                candle_nn::rotary_emb::rope(&xr.contiguous()?, &cos, &sin)
            } else {
                super::gpt_neox::rope_differentiable(xr, &cos, &sin)
            }
        };
        if self.ndims == head_size {
            return rotate(x);
        }
        let rotated = rotate(&x.narrow(D::Minus1, 0, self.ndims)?)?;
        let pass = x.narrow(D::Minus1, self.ndims, head_size - self.ndims)?;
        Tensor::cat(&[&rotated, &pass], D::Minus1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_short_divides_long_and_blends_between() {
        let plain = Rope::new(64, 500000.0, &RopeScaling::None);
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        let scaled = Rope::new(64, 500000.0, &s);
        let wl = |f: f32| 2.0 * std::f32::consts::PI / f;
        let mut seen = [false; 3];
        for (p, q) in plain.inv_freq.iter().zip(&scaled.inv_freq) {
            if wl(*p) < 8192.0 / 4.0 {
                assert_eq!(p, q);
                seen[0] = true;
            } else if wl(*p) > 8192.0 {
                assert!((q - p / 8.0).abs() <= 1e-7 * p.abs());
                seen[1] = true;
            } else {
                assert!(*q < *p && *q > p / 8.0);
                seen[2] = true;
            }
        }
        assert_eq!(seen, [true; 3]);
        let lin = Rope::new(8, 10000.0, &RopeScaling::Linear { factor: 4.0 });
        assert_eq!(lin.inv_freq[1], (1.0f32 / 10000f32.powf(0.25)) / 4.0);
    }
}
