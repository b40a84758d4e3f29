//! AdamW with decay / no-decay groups, the warmup + cosine schedule (with an optional, declared
//! learning-rate surge), and clipping by global gradient norm.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// A short multiplication of the learning rate, scheduled on purpose to provoke a loss spike
/// when the run has none of its own; it is written into `trajectory.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSurge {
    /// First step of the surge (1-based, like the step numbers in `metrics.jsonl`).
    pub step: u64,
    /// How many steps it lasts.
    pub steps: u64,
    /// The scheduled learning rate is multiplied by this during the surge.
    pub factor: f64,
    /// Why it is there, in words, for `trajectory.json`, the README and the TUI.
    pub why: String,
}

/// Linear warmup to `peak_lr`, then cosine decay to `min_lr` at `total_steps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    pub surge: Option<LrSurge>,
}

impl Schedule {
    /// The learning rate used by optimizer step `step` (1-based).
    pub fn lr(&self, step: u64) -> f64 {
        let base = if step <= self.warmup_steps {
            self.peak_lr * step as f64 / self.warmup_steps.max(1) as f64
        } else {
            let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
            let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
            let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            self.min_lr + (self.peak_lr - self.min_lr) * cos
        };
        match &self.surge {
            Some(s) if step >= s.step && step < s.step + s.steps => base * s.factor,
            _ => base,
        }
    }
}

/// AdamW hyper-parameters (the learning rate comes from the [`Schedule`] at each step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// Weight decay applies to matrices and embeddings, not to biases and LayerNorm parameters
/// (the usual GPT-NeoX / nanoGPT grouping): decaying a gain or an offset towards zero only
/// fights the normalisation.
pub fn decays(name: &str) -> bool {
    let norm = name.contains("layernorm") || name.contains("layer_norm") || name.contains(".ln");
    !(name.ends_with(".bias") || norm)
}

struct Param {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// AdamW over two groups (decay / no decay), moments in the variables' dtype (f32 here).
pub struct AdamW {
    params: Vec<Param>,
    cfg: AdamWConfig,
    t: u64,
}

impl AdamW {
    /// `vars` are named; the order given is the order of updates (keep it sorted for
    /// reproducibility).
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let m = var.zeros_like()?;
                let v = var.zeros_like()?;
                Ok(Param {
                    decay: decays(&name),
                    name,
                    var,
                    m,
                    v,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW { params, cfg, t: 0 })
    }

    /// Names of the parameters in the decay and the no-decay group.
    pub fn groups(&self) -> (Vec<&str>, Vec<&str>) {
        let (d, n): (Vec<_>, Vec<_>) = self.params.iter().partition(|p| p.decay);
        (
            d.iter().map(|p| p.name.as_str()).collect(),
            n.iter().map(|p| p.name.as_str()).collect(),
        )
    }

    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.params.iter().map(|p| &p.var)
    }

    /// One update with learning rate `lr`. Parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let c = &self.cfg;
        let bias1 = 1.0 - c.beta1.powi(self.t as i32);
        let bias2 = 1.0 - c.beta2.powi(self.t as i32);
        for p in self.params.iter_mut() {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            p.m = ((&p.m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            p.v = ((&p.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&p.m * (1.0 / bias1))?;
            let denom = ((&p.v * (1.0 / bias2))?.sqrt()? + c.eps)?;
            let wd = if p.decay { lr * c.weight_decay } else { 0.0 };
            let theta = (p.var.as_tensor() * (1.0 - wd))?;
            let next = (theta - (m_hat / denom)?.affine(lr, 0.0)?)?;
            p.var.set(&next)?;
        }
        Ok(())
    }
}

/// The global L2 norm of the gradients of `vars` (as if all were one vector).
pub fn grad_norm<'a>(vars: impl Iterator<Item = &'a Var>, grads: &GradStore) -> Result<f64> {
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    Ok(sq.sqrt())
}

/// Scales all gradients by `max_norm / norm` when the global norm exceeds `max_norm`.
/// Returns the norm before clipping.
pub fn clip_grad_norm(vars: &[Var], grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let norm = grad_norm(vars.iter(), grads)?;
    if norm.is_finite() && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                let scaled = (g * scale)?;
                grads.insert(v.as_tensor(), scaled);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn sched() -> Schedule {
        Schedule {
            peak_lr: 1e-2,
            min_lr: 1e-3,
            warmup_steps: 10,
            total_steps: 110,
            surge: None,
        }
    }

    #[test]
    fn warmup_then_cosine_to_min() {
        let s = sched();
        assert!((s.lr(1) - 1e-3).abs() < 1e-12);
        assert!((s.lr(10) - 1e-2).abs() < 1e-12);
        // Halfway through the decay the cosine is at the midpoint.
        assert!((s.lr(60) - 5.5e-3).abs() < 1e-12);
        assert!((s.lr(110) - 1e-3).abs() < 1e-12);
        assert!((s.lr(500) - 1e-3).abs() < 1e-12);
        for t in 11..110 {
            assert!(s.lr(t + 1) < s.lr(t));
        }
    }

    #[test]
    fn surge_multiplies_only_its_steps() {
        let mut s = sched();
        let plain = s.clone();
        s.surge = Some(LrSurge {
            step: 40,
            steps: 3,
            factor: 8.0,
            why: "test".into(),
        });
        for t in 1..=110 {
            let want = if (40..43).contains(&t) {
                plain.lr(t) * 8.0
            } else {
                plain.lr(t)
            };
            assert!((s.lr(t) - want).abs() < 1e-15, "step {t}");
        }
    }

    #[test]
    fn no_decay_for_biases_and_layernorms() {
        assert!(decays("gpt_neox.layers.0.attention.query_key_value.weight"));
        assert!(decays("gpt_neox.embed_in.weight"));
        assert!(decays("embed_out.weight"));
        assert!(!decays("gpt_neox.layers.0.attention.dense.bias"));
        assert!(!decays("gpt_neox.layers.1.input_layernorm.weight"));
        assert!(!decays("gpt_neox.layers.1.post_attention_layernorm.bias"));
        assert!(!decays("gpt_neox.final_layer_norm.weight"));
    }

    #[test]
    fn adamw_matches_the_formula_per_group() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_vec(vec![1.0f32, -2.0, 0.5], 3, &dev)?;
        let b = Var::from_vec(vec![0.3f32, 0.1, -0.2], 3, &dev)?;
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let mut opt = AdamW::new(
            vec![("l.weight".into(), w.clone()), ("l.bias".into(), b.clone())],
            cfg.clone(),
        )?;
        assert_eq!(opt.groups(), (vec!["l.weight"], vec!["l.bias"]));
        let (lr1, lr2) = (0.01, 0.02);
        // loss = sum(w * x) + sum(b^2): grad_w = x, grad_b = 2b.
        let x = Tensor::new(&[0.5f32, 1.0, -3.0], &dev)?;
        let mut want_w: Vec<f64> = vec![1.0, -2.0, 0.5];
        let mut want_b: Vec<f64> = vec![0.3, 0.1, -0.2];
        let (mut mw, mut vw, mut mb, mut vb) =
            (vec![0.0; 3], vec![0.0; 3], vec![0.0; 3], vec![0.0; 3]);
        for (t, lr) in [(1, lr1), (2, lr2)] {
            let loss = ((w.as_tensor() * &x)?.sum_all()? + b.as_tensor().sqr()?.sum_all()?)?;
            opt.step(&loss.backward()?, lr)?;
            let gx = [0.5, 1.0, -3.0];
            for i in 0..3 {
                let gb = 2.0 * want_b[i];
                for (p, g, m, v, wd) in [
                    (&mut want_w[i], gx[i], &mut mw[i], &mut vw[i], 0.1),
                    (&mut want_b[i], gb, &mut mb[i], &mut vb[i], 0.0),
                ] {
                    *m = 0.9 * *m + 0.1 * g;
                    *v = 0.95 * *v + 0.05 * g * g;
                    let mh = *m / (1.0 - 0.9f64.powi(t));
                    let vh = *v / (1.0 - 0.95f64.powi(t));
                    *p = *p * (1.0 - lr * wd) - lr * mh / (vh.sqrt() + 1e-8);
                }
            }
        }
        for (got, want) in [(w.to_vec1::<f32>()?, want_w), (b.to_vec1::<f32>()?, want_b)] {
            for (g, w) in got.iter().zip(want) {
                assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
            }
        }
        Ok(())
    }

    #[test]
    fn clipping_scales_to_max_norm_and_reports_the_original() -> Result<()> {
        let dev = Device::Cpu;
        let a = Var::from_vec(vec![1.0f32, 1.0], 2, &dev)?;
        let b = Var::from_vec(vec![1.0f32], 1, &dev)?;
        // grads: a -> [3, 0]... use loss = 3*a0 + 4*b0 => grads [3,0] and [4]; norm 5.
        let coef = Tensor::new(&[3.0f32, 0.0], &dev)?;
        let loss = ((a.as_tensor() * &coef)?.sum_all()? + (b.as_tensor() * 4.0)?.sum_all()?)?;
        let mut grads = loss.backward()?;
        let vars = vec![a.clone(), b.clone()];
        let n = clip_grad_norm(&vars, &mut grads, 1.0)?;
        assert!((n - 5.0).abs() < 1e-6);
        assert!((grad_norm(vars.iter(), &grads)? - 1.0).abs() < 1e-5);
        let ga = grads.get(a.as_tensor()).unwrap().to_vec1::<f32>()?;
        assert!((ga[0] - 0.6).abs() < 1e-5);
        // Below the threshold nothing changes.
        let n2 = clip_grad_norm(&vars, &mut grads, 10.0)?;
        assert!((n2 - 1.0).abs() < 1e-5);
        assert!((grad_norm(vars.iter(), &grads)? - 1.0).abs() < 1e-5);
        Ok(())
    }
}
