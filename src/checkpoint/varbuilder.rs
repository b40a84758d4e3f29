//! A candle `VarBuilder` over any checkpoint form, so models load the same way from
//! safetensors, shards or PyTorch pickles.

use std::sync::Arc;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::WeightsReader;

struct ReaderBackend(Arc<WeightsReader>);

fn wrap(e: super::CheckpointError) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

impl SimpleBackend for ReaderBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let r = &self.0;
        let info = r.info(name).ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: no tensor named '{name}'", r.path().display()))
        })?;
        if info.shape.as_slice() != s.dims() {
            return Err(candle_core::Error::Msg(format!(
                "{}: tensor '{name}' has shape {:?} but the model expects {:?}",
                r.file_of(name).unwrap_or(r.path()).display(),
                info.shape,
                s.dims()
            )));
        }
        r.tensor(name, dev).map_err(wrap)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.tensor(name, dev).map_err(wrap)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.info(name).is_some()
    }
}

/// A `VarBuilder` reading tensors lazily from `reader`, converted to `dtype` on `device`.
/// Missing tensors and shape mismatches are errors naming the file and the tensor.
pub fn var_builder(
    reader: Arc<WeightsReader>,
    dtype: DType,
    device: &Device,
) -> candle_nn::VarBuilder<'static> {
    candle_nn::VarBuilder::from_backend(Box::new(ReaderBackend(reader)), dtype, device.clone())
}

#[cfg(test)]
mod tests {
    use super::super::{DType as D, SafetensorsWriter, TensorInfo, DEFAULT_SHARD_SIZE};
    use super::*;

    #[test]
    fn loads_converts_and_names_shape_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let plan = vec![TensorInfo {
            name: "lin.weight".into(),
            dtype: D::F16,
            shape: vec![2, 3],
        }];
        let mut w = SafetensorsWriter::create(dir.path(), plan, DEFAULT_SHARD_SIZE).unwrap();
        let vals: Vec<half::f16> = (0..6)
            .map(|i| half::f16::from_f32(i as f32 * 0.5))
            .collect();
        w.write("lin.weight", bytemuck::cast_slice(&vals)).unwrap();
        w.finish().unwrap();
        let r = Arc::new(WeightsReader::open(dir.path()).unwrap());
        let vb = var_builder(r, DType::F32, &Device::Cpu);
        let t = vb.pp("lin").get((2, 3), "weight").unwrap();
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(
            t.to_vec2::<f32>().unwrap(),
            vec![vec![0.0, 0.5, 1.0], vec![1.5, 2.0, 2.5]]
        );
        let e = vb.pp("lin").get((3, 2), "weight").unwrap_err().to_string();
        assert!(
            e.contains("lin.weight") && e.contains("model.safetensors"),
            "{e}"
        );
        let e = vb.get(3, "missing").unwrap_err().to_string();
        assert!(e.contains("'missing'"), "{e}");
        assert!(vb.contains_tensor("lin.weight"));
    }
}
