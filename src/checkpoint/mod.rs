//! Reading and writing checkpoint tensors: safetensors (mmap, shards), PyTorch zip pickles, streaming writer, atomic output dirs.
pub mod pickle;
mod tensor;
pub mod torch;
pub use tensor::{DType, TensorInfo};
