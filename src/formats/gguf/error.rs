//! Why a GGUF header was rejected.

use std::io;
use std::path::PathBuf;

/// Why a GGUF header was rejected.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot open `{}`", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read the gguf header")]
    Io(#[from] io::Error),
    #[error("not a gguf file: the magic is not `GGUF`: {found:02x?}")]
    NotGguf { found: [u8; 4] },
    #[error("unsupported gguf version: {0}")]
    UnsupportedVersion(u32),
    #[error("gguf header is truncated: expected {expected} bytes for {what} at offset {offset}")]
    Truncated { what: String, expected: u64, offset: u64 },
    #[error("{what} does not fit in the file: {count} entries need at least {needed} bytes, {remaining} remain")]
    CountPastEnd { what: String, count: u64, needed: u64, remaining: u64 },
    #[error("{what} is too large: {value} (limit: {limit})")]
    TooLarge { what: String, value: u64, limit: u64 },
    #[error("{what} is not valid utf-8: string at offset {offset}")]
    InvalidUtf8 { what: String, offset: u64 },
    #[error("{what} has an unknown value type: {type_id}")]
    UnknownValueType { what: String, type_id: u32 },
    #[error("{what} is not a valid boolean: {value}")]
    InvalidBool { what: String, value: u8 },
    #[error("duplicate metadata key: `{0}`")]
    DuplicateKey(String),
    #[error("`{key}` has the wrong type: expected {expected}")]
    WrongType { key: &'static str, expected: &'static str },
    #[error("`general.alignment` is not a non-zero power of two: {0}")]
    BadAlignment(u64),
    #[error("duplicate tensor name: `{0}`")]
    DuplicateTensor(String),
    #[error("tensor `{tensor}` has a zero-sized dimension: index {index}")]
    ZeroDim { tensor: String, index: u32 },
    #[error("tensor `{tensor}` has an unknown ggml type: {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },
    #[error("tensor `{tensor}` is too large: its size overflows 64 bits")]
    TensorTooLarge { tensor: String },
    #[error("tensor `{tensor}` has rows of partial `{type_name}` blocks: {row_len} elements, blocks of {block_size}")]
    PartialBlock { tensor: String, type_name: &'static str, row_len: u64, block_size: u64 },
    #[error("tensor `{tensor}` is not aligned to {alignment} bytes: offset {offset}")]
    MisalignedTensor { tensor: String, offset: u64, alignment: u64 },
    #[error(
        "tensor `{tensor}` lies past the end of the file: {size} bytes at data offset {offset}, file length {file_len}"
    )]
    TensorOutOfBounds { tensor: String, offset: u64, size: u64, file_len: u64 },
    #[error("tensors `{a}` and `{b}` overlap")]
    TensorsOverlap { a: String, b: String },
}
