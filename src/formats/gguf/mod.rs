//! Reading and validating the header of a GGUF file (llama.cpp's model format,
//! versions 2 and 3): the metadata key/values and the tensor infos, never the
//! tensor data; and the parts of a model split over several files ([`split`]).
//!
//! The input is untrusted. Every count read from the file is checked against
//! [`GgufLimits`] and against the bytes left in the file before anything is
//! allocated for it, all arithmetic on numbers from the file is checked, and
//! each tensor's data must lie inside the file, aligned, without overlapping
//! another tensor's. Nothing here panics on bad input.
//!
//! Choices where the format leaves room:
//! - Version 1 (32-bit counts) is rejected as unsupported; so is a big-endian
//!   file, whose version reads as a huge number.
//! - A zero-sized dimension is rejected: no real model has an empty tensor, and
//!   a zero would hide an overflowing product of the other dimensions.
//! - `n_dims` of 0 is accepted as a scalar of one element, as in ggml.
//! - Tensors may be stored in any order and with gaps between them; llama.cpp
//!   insists that each follows the previous one, but gaps cannot hurt a reader.
//! - A boolean byte other than 0 or 1 is rejected.
//! - `general.alignment` must be a `u32`, as the format specifies.
//! - ggml types 39 (`MXFP4`), 40 (`NVFP4`) and 41 (`Q1_0`) are known besides
//!   those of GGUF v3's original list, because current llama.cpp writes them.

mod error;
pub mod facts;
mod ggml_type;
mod header;
mod limits;
mod reader;
pub mod split;
mod tensor;
#[cfg(test)]
mod tests;
pub mod tokenizer;
mod value;

pub use error::GgufError;
pub use ggml_type::GgmlType;
pub use header::GgufHeader;
pub use limits::GgufLimits;
use reader::*;
pub use reader::{read_header, read_header_from_path};
pub use split::{GgufParts, GgufPartsError};
pub use tensor::TensorInfo;
pub use value::GgufValue;
