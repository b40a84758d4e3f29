//! A fixture model's reference from transformers (`reference.json`: input ids and mean
//! cross-entropy; `reference.safetensors`: logits), and the two comparisons the model tests make.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use lawa::eval::nll::token_nll;

pub struct Reference {
    pub ids: Tensor,
    pub logits: Tensor,
    pub mean_ce: f64,
}

pub fn reference(dir: &Path) -> Reference {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let rows: Vec<Vec<u32>> = serde_json::from_value(json["input_ids"].clone()).unwrap();
    let (b, t) = (rows.len(), rows[0].len());
    let ids = Tensor::from_vec(rows.concat(), (b, t), &Device::Cpu).unwrap();
    let mut st =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    Reference {
        ids,
        logits: st.remove("logits").unwrap(),
        mean_ce: json["mean_ce"].as_f64().unwrap(),
    }
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a.to_dtype(DType::F32).unwrap() - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Mean next-token cross-entropy of `logits [B, T, V]` on `ids [B, T]`, in f64.
pub fn mean_ce(logits: &Tensor, ids: &Tensor) -> f64 {
    let (b, t, v) = logits.dims3().unwrap();
    let inputs = logits
        .narrow(1, 0, t - 1)
        .unwrap()
        .reshape((b * (t - 1), v))
        .unwrap();
    let targets = ids.narrow(1, 1, t - 1).unwrap().flatten_all().unwrap();
    let nll: Vec<f32> = token_nll(&inputs, &targets).unwrap().to_vec1().unwrap();
    nll.iter().map(|&x| x as f64).sum::<f64>() / nll.len() as f64
}
