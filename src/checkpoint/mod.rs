//! Reading and writing checkpoint tensors: safetensors (mmap, shards), PyTorch zip pickles, streaming writer, atomic output dirs.
mod tensor;
pub use tensor::{DType, TensorInfo};
