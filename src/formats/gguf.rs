//! Reading and validating the header of a GGUF file (llama.cpp's model format,
//! versions 2 and 3): the metadata key/values and the tensor infos, never the
//! tensor data.
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

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const MAGIC: [u8; 4] = *b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
const ALIGNMENT_KEY: &str = "general.alignment";
/// Smallest metadata entry: empty key (8) + value type (4) + one-byte value.
const MIN_KV_BYTES: u64 = 13;
/// Smallest tensor info: empty name (8) + `n_dims` (4) + type (4) + offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 24;
/// Each array level is a stack frame, so nesting is capped whatever the
/// caller's limits say, lest a file of nested arrays overflow the stack.
const HARD_MAX_NESTING: u32 = 32;
/// Vectors start no bigger than this and grow as elements actually arrive, so
/// a count that passes every check still reserves little before it is backed
/// by bytes.
const MAX_PREALLOC: u64 = 4096;
/// Headers are read in many small pieces; buffering keeps them off syscalls.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Bounds on what a header may claim, beyond the file's own length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufLimits {
    /// Bytes in one string (key, value, or tensor name).
    pub max_string_len: u64,
    /// Elements in one metadata array.
    pub max_array_len: u64,
    pub max_tensors: u64,
    pub max_kv: u64,
    /// Dimensions of one tensor.
    pub max_dims: u32,
    /// Array levels in one value: 1 allows arrays, 2 arrays of arrays. Values
    /// above 32 act as 32.
    pub max_nesting: u32,
}

impl Default for GgufLimits {
    fn default() -> Self {
        Self {
            max_string_len: 16 << 20,
            max_array_len: 16 << 20,
            max_tensors: 1 << 20,
            max_kv: 1 << 20,
            max_dims: 4, // GGML_MAX_DIMS
            max_nesting: 2,
        }
    }
}

/// One metadata value, typed as the file stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// Any integer type holding a non-negative value: writers disagree on
    /// which integer type a given key uses.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// Any float or integer; 64-bit integers may lose precision.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    /// Any integer type, widened to hold them all.
    fn as_i128(&self) -> Option<i128> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::I8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::U64(v) => Some(v.into()),
            Self::I64(v) => Some(v.into()),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// A ggml tensor type id, known or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// (name, elements per block, bytes per block), as in ggml's `type_traits`;
    /// sizes checked against the block structs of llama.cpp's `ggml-common.h`.
    fn traits(self) -> Option<(&'static str, u64, u64)> {
        Some(match self.0 {
            0 => ("F32", 1, 4),
            1 => ("F16", 1, 2),
            2 => ("Q4_0", 32, 18),
            3 => ("Q4_1", 32, 20),
            6 => ("Q5_0", 32, 22),
            7 => ("Q5_1", 32, 24),
            8 => ("Q8_0", 32, 34),
            9 => ("Q8_1", 32, 36),
            10 => ("Q2_K", 256, 84),
            11 => ("Q3_K", 256, 110),
            12 => ("Q4_K", 256, 144),
            13 => ("Q5_K", 256, 176),
            14 => ("Q6_K", 256, 210),
            15 => ("Q8_K", 256, 292),
            16 => ("IQ2_XXS", 256, 66),
            17 => ("IQ2_XS", 256, 74),
            18 => ("IQ3_XXS", 256, 98),
            19 => ("IQ1_S", 256, 50),
            20 => ("IQ4_NL", 32, 18),
            21 => ("IQ3_S", 256, 110),
            22 => ("IQ2_S", 256, 82),
            23 => ("IQ4_XS", 256, 136),
            24 => ("I8", 1, 1),
            25 => ("I16", 1, 2),
            26 => ("I32", 1, 4),
            27 => ("I64", 1, 8),
            28 => ("F64", 1, 8),
            29 => ("IQ1_M", 256, 56),
            30 => ("BF16", 1, 2),
            34 => ("TQ1_0", 256, 54),
            35 => ("TQ2_0", 256, 66),
            39 => ("MXFP4", 32, 17),
            40 => ("NVFP4", 64, 36),
            41 => ("Q1_0", 128, 18),
            _ => return None,
        })
    }

    /// ggml's name in upper case, e.g. `Q4_K`; `None` for an unknown id.
    pub fn name(self) -> Option<&'static str> {
        self.traits().map(|(name, _, _)| name)
    }

    /// Elements per block.
    pub fn block_size(self) -> Option<u64> {
        self.traits().map(|(_, block, _)| block)
    }

    /// Bytes per block.
    pub fn type_size(self) -> Option<u64> {
        self.traits().map(|(_, _, size)| size)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ggml type {}", self.0),
        }
    }
}

/// One tensor's description from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// As stored: fastest-varying dimension first.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Relative to [`GgufHeader::data_offset`].
    pub offset: u64,
}

impl TensorInfo {
    /// Product of the dimensions, saturating at `u64::MAX`; never saturates for
    /// tensors from [`read_header`], which rejects overflowing ones.
    pub fn element_count(&self) -> u64 {
        self.checked_element_count().unwrap_or(u64::MAX)
    }

    fn checked_element_count(&self) -> Option<u64> {
        self.dims.iter().try_fold(1_u64, |acc, &dim| acc.checked_mul(dim))
    }

    /// Bytes of data: whole blocks along the first dimension, as ggml stores rows.
    ///
    /// # Errors
    /// An unknown type, a first dimension that is not whole blocks, or a size
    /// that overflows `u64`.
    pub fn byte_size(&self) -> Result<u64, GgufError> {
        let (type_name, block, type_size) = self
            .ggml_type
            .traits()
            .ok_or_else(|| GgufError::UnknownTensorType { tensor: self.name.clone(), type_id: self.ggml_type.0 })?;
        let too_large = || GgufError::TensorTooLarge { tensor: self.name.clone() };
        let count = self.checked_element_count().ok_or_else(too_large)?;
        let row_len = self.dims.first().copied().unwrap_or(1);
        if !row_len.is_multiple_of(block) {
            let tensor = self.name.clone();
            return Err(GgufError::PartialBlock { tensor, type_name, row_len, block_size: block });
        }
        (count / block).checked_mul(type_size).ok_or_else(too_large)
    }

    /// The data's byte range relative to `data_offset`, once checked to be
    /// aligned and inside the file.
    fn data_span(&self, data_offset: u64, alignment: u64, file_len: u64) -> Result<(u64, u64), GgufError> {
        let size = self.byte_size()?;
        if !self.offset.is_multiple_of(alignment) {
            let tensor = self.name.clone();
            return Err(GgufError::MisalignedTensor { tensor, offset: self.offset, alignment });
        }
        let end = data_offset.checked_add(self.offset).and_then(|start| start.checked_add(size));
        match end {
            Some(end) if end <= file_len => Ok((self.offset, end - data_offset)),
            _ => Err(GgufError::TensorOutOfBounds { tensor: self.name.clone(), offset: self.offset, size, file_len }),
        }
    }
}

/// Everything before the tensor data.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub version: u32,
    /// In file order; keys are unique.
    pub metadata: Vec<(String, GgufValue)>,
    /// In file order; names are unique.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset where the tensor data section starts.
    pub data_offset: u64,
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        find(&self.metadata, key)
    }

    /// `general.architecture`, e.g. `llama`.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture")?.as_str()
    }

    /// `{architecture}.{suffix}` as an integer, e.g. suffix `attention.head_count`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let key = format!("{}.{suffix}", self.architecture()?);
        self.get(&key)?.as_u64()
    }

    /// `general.file_type`: llama.cpp's raw `llama_ftype` id.
    pub fn file_type(&self) -> Option<u32> {
        self.get("general.file_type")?.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    /// Elements over all tensors, saturating.
    pub fn parameter_count(&self) -> u64 {
        self.tensors.iter().fold(0, |sum, t| sum.saturating_add(t.element_count()))
    }

    /// The type holding the most elements among tensors of two or more
    /// dimensions (the weights; 3-D ones are stacked experts), ties going to
    /// the lowest type id. Norms and biases are 1-D and usually `F32`, so they
    /// are left out.
    pub fn dominant_type(&self) -> Option<GgmlType> {
        let mut totals: BTreeMap<GgmlType, u64> = BTreeMap::new();
        for tensor in self.tensors.iter().filter(|t| t.dims.len() >= 2) {
            let total = totals.entry(tensor.ggml_type).or_default();
            *total = total.saturating_add(tensor.element_count());
        }
        // `max_by_key` keeps the last of equal maxima, hence the descending walk.
        totals.into_iter().rev().max_by_key(|&(_, count)| count).map(|(ty, _)| ty)
    }
}

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

/// Reads and validates the header of the GGUF file `file`, whose length is
/// `file_len`, from its start whatever its current position. Reads are
/// buffered here, so `file` may be a bare [`File`].
///
/// # Errors
/// Any [`GgufError`] but `Open`: the first problem found, in file order, then
/// the tensor data checks.
pub fn read_header(file: &mut (impl Read + Seek), file_len: u64, limits: &GgufLimits) -> Result<GgufHeader, GgufError> {
    file.seek(SeekFrom::Start(0))?;
    let inner = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let mut r = Reader { inner, pos: 0, len: file_len, limits };
    let version = read_preamble(&mut r)?;
    let tensor_count = r.count(Ctx::Field("tensor_count"), limits.max_tensors, MIN_TENSOR_INFO_BYTES)?;
    let kv_count = r.count(Ctx::Field("metadata_kv_count"), limits.max_kv, MIN_KV_BYTES)?;
    let metadata = read_metadata(&mut r, kv_count)?;
    let alignment = alignment_of(&metadata)?;
    let tensors = read_tensor_infos(&mut r, tensor_count)?;
    // Past `u64::MAX` the bounds checks below fail, which is the right answer.
    let data_offset = r.pos.checked_next_multiple_of(alignment).unwrap_or(u64::MAX);
    check_tensor_data(&tensors, data_offset, alignment, file_len)?;
    Ok(GgufHeader { version, metadata, tensors, alignment, data_offset })
}

/// [`read_header`] on the file at `path`, with default limits.
///
/// # Errors
/// [`GgufError::Open`] when the file cannot be opened, else as [`read_header`].
pub fn read_header_from_path(path: &Path) -> Result<GgufHeader, GgufError> {
    let open_error = |source| GgufError::Open { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(open_error)?;
    let file_len = file.metadata().map_err(open_error)?.len();
    read_header(&mut file, file_len, &GgufLimits::default())
}

/// What is being read, for error messages; formatted only once one happens.
#[derive(Clone, Copy)]
enum Ctx<'a> {
    /// A fixed field of the header.
    Field(&'static str),
    /// Part of the `n`-th entry before its name is known.
    Nth(&'static str, u64),
    /// Part of the metadata entry with this key.
    Of(&'static str, &'a str),
    /// A field of the named tensor's info.
    OfTensor(&'static str, &'a str),
}

impl fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(field) => write!(f, "`{field}`"),
            Self::Nth(part, n) => write!(f, "the {part} {n}"),
            Self::Of(part, key) => write!(f, "the {part} of `{key}`"),
            Self::OfTensor(field, name) => write!(f, "`{field}` of tensor `{name}`"),
        }
    }
}

/// A byte source that knows its position and how many bytes the file has left.
struct Reader<'l, R> {
    inner: R,
    pos: u64,
    len: u64,
    limits: &'l GgufLimits,
}

impl<R: Read> Reader<'_, R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn truncated(&self, expected: u64, what: Ctx<'_>) -> GgufError {
        GgufError::Truncated { what: what.to_string(), expected, offset: self.pos }
    }

    fn fill(&mut self, buf: &mut [u8], what: Ctx<'_>) -> Result<(), GgufError> {
        let n = buf.len() as u64;
        if n > self.remaining() {
            return Err(self.truncated(n, what));
        }
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += n;
                Ok(())
            }
            // The caller's `file_len` may promise more bytes than there are.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.truncated(n, what)),
            Err(e) => Err(e.into()),
        }
    }

    fn bytes<const N: usize>(&mut self, what: Ctx<'_>) -> Result<[u8; N], GgufError> {
        let mut buf = [0; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn u32(&mut self, what: Ctx<'_>) -> Result<u32, GgufError> {
        self.bytes(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: Ctx<'_>) -> Result<u64, GgufError> {
        self.bytes(what).map(u64::from_le_bytes)
    }

    fn bool(&mut self, what: Ctx<'_>) -> Result<bool, GgufError> {
        match self.bytes(what)? {
            [0] => Ok(false),
            [1] => Ok(true),
            [value] => Err(GgufError::InvalidBool { what: what.to_string(), value }),
        }
    }

    fn string(&mut self, what: Ctx<'_>) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let too_large = || format!("the length of {what}");
        check_limit(len, self.limits.max_string_len, too_large)?;
        if len > self.remaining() {
            return Err(self.truncated(len, what));
        }
        let start = self.pos;
        let size = usize::try_from(len).map_err(|_| too_large_error(too_large(), len, usize::MAX as u64))?;
        let mut buf = vec![0; size];
        self.fill(&mut buf, what)?;
        String::from_utf8(buf).map_err(|_| GgufError::InvalidUtf8 { what: what.to_string(), offset: start })
    }

    /// A count of entries that each take at least `min_size` bytes.
    fn count(&mut self, what: Ctx<'_>, limit: u64, min_size: u64) -> Result<u64, GgufError> {
        let count = self.u64(what)?;
        check_limit(count, limit, || what.to_string())?;
        let needed = count.saturating_mul(min_size);
        let remaining = self.remaining();
        if needed > remaining {
            return Err(GgufError::CountPastEnd { what: what.to_string(), count, needed, remaining });
        }
        Ok(count)
    }
}

fn check_limit(value: u64, limit: u64, what: impl FnOnce() -> String) -> Result<(), GgufError> {
    if value <= limit { Ok(()) } else { Err(too_large_error(what(), value, limit)) }
}

fn too_large_error(what: String, value: u64, limit: u64) -> GgufError {
    GgufError::TooLarge { what, value, limit }
}

/// Initial capacity for `count` entries; see [`MAX_PREALLOC`].
fn prealloc(count: u64) -> usize {
    usize::try_from(count.min(MAX_PREALLOC)).unwrap_or(0)
}

fn read_preamble<R: Read>(r: &mut Reader<'_, R>) -> Result<u32, GgufError> {
    let found = r.bytes(Ctx::Field("magic"))?;
    if found != MAGIC {
        return Err(GgufError::NotGguf { found });
    }
    match r.u32(Ctx::Field("version"))? {
        version @ (2 | 3) => Ok(version),
        version => Err(GgufError::UnsupportedVersion(version)),
    }
}

fn read_metadata<R: Read>(r: &mut Reader<'_, R>, count: u64) -> Result<Vec<(String, GgufValue)>, GgufError> {
    let mut metadata = Vec::with_capacity(prealloc(count));
    for index in 0..count {
        let key = r.string(Ctx::Nth("key of metadata entry", index))?;
        let type_id = r.u32(Ctx::Of("type", &key))?;
        let value = read_value(r, type_id, 0, &key)?;
        metadata.push((key, value));
    }
    match first_duplicate(metadata.iter().map(|(key, _)| key.as_str())) {
        Some(key) => Err(GgufError::DuplicateKey(key.to_owned())),
        None => Ok(metadata),
    }
}

/// A value of type `type_id` inside `depth` arrays, belonging to `key`.
fn read_value<R: Read>(r: &mut Reader<'_, R>, type_id: u32, depth: u32, key: &str) -> Result<GgufValue, GgufError> {
    let what = Ctx::Of("value", key);
    Ok(match type_id {
        0 => GgufValue::U8(u8::from_le_bytes(r.bytes(what)?)),
        1 => GgufValue::I8(i8::from_le_bytes(r.bytes(what)?)),
        2 => GgufValue::U16(u16::from_le_bytes(r.bytes(what)?)),
        3 => GgufValue::I16(i16::from_le_bytes(r.bytes(what)?)),
        4 => GgufValue::U32(u32::from_le_bytes(r.bytes(what)?)),
        5 => GgufValue::I32(i32::from_le_bytes(r.bytes(what)?)),
        6 => GgufValue::F32(f32::from_le_bytes(r.bytes(what)?)),
        7 => GgufValue::Bool(r.bool(what)?),
        8 => GgufValue::String(r.string(what)?),
        9 => GgufValue::Array(read_array(r, depth + 1, key)?),
        10 => GgufValue::U64(u64::from_le_bytes(r.bytes(what)?)),
        11 => GgufValue::I64(i64::from_le_bytes(r.bytes(what)?)),
        12 => GgufValue::F64(f64::from_le_bytes(r.bytes(what)?)),
        _ => return Err(unknown_value_type(type_id, key)),
    })
}

fn unknown_value_type(type_id: u32, key: &str) -> GgufError {
    GgufError::UnknownValueType { what: Ctx::Of("value", key).to_string(), type_id }
}

/// Bytes one value of `type_id` takes at least; `None` for an unknown type.
fn min_value_size(type_id: u32) -> Option<u64> {
    match type_id {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        8 | 10..=12 => Some(8),
        9 => Some(12), // element type + count
        _ => None,
    }
}

fn read_array<R: Read>(r: &mut Reader<'_, R>, depth: u32, key: &str) -> Result<Vec<GgufValue>, GgufError> {
    let max_depth = r.limits.max_nesting.min(HARD_MAX_NESTING);
    check_limit(depth.into(), max_depth.into(), || format!("the array nesting depth of `{key}`"))?;
    let elem_type = r.u32(Ctx::Of("element type", key))?;
    let min_size = min_value_size(elem_type).ok_or_else(|| unknown_value_type(elem_type, key))?;
    let count = r.count(Ctx::Of("element count", key), r.limits.max_array_len, min_size)?;
    let mut items = Vec::with_capacity(prealloc(count));
    for _ in 0..count {
        items.push(read_value(r, elem_type, depth, key)?);
    }
    Ok(items)
}

/// `general.alignment`, or the default when the key is absent.
fn alignment_of(metadata: &[(String, GgufValue)]) -> Result<u64, GgufError> {
    match find(metadata, ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(&GgufValue::U32(align)) if align.is_power_of_two() => Ok(align.into()),
        Some(&GgufValue::U32(align)) => Err(GgufError::BadAlignment(align.into())),
        Some(_) => Err(GgufError::WrongType { key: ALIGNMENT_KEY, expected: "u32" }),
    }
}

fn read_tensor_infos<R: Read>(r: &mut Reader<'_, R>, count: u64) -> Result<Vec<TensorInfo>, GgufError> {
    let mut tensors = Vec::with_capacity(prealloc(count));
    for index in 0..count {
        tensors.push(read_tensor_info(r, index)?);
    }
    match first_duplicate(tensors.iter().map(|t| t.name.as_str())) {
        Some(name) => Err(GgufError::DuplicateTensor(name.to_owned())),
        None => Ok(tensors),
    }
}

fn read_tensor_info<R: Read>(r: &mut Reader<'_, R>, index: u64) -> Result<TensorInfo, GgufError> {
    let name = r.string(Ctx::Nth("name of tensor", index))?;
    let n_dims = r.u32(Ctx::OfTensor("n_dims", &name))?;
    let max_dims = r.limits.max_dims;
    check_limit(n_dims.into(), max_dims.into(), || Ctx::OfTensor("n_dims", &name).to_string())?;
    let dims = read_dims(r, n_dims, &name)?;
    let ggml_type = GgmlType(r.u32(Ctx::OfTensor("type", &name))?);
    if ggml_type.name().is_none() {
        return Err(GgufError::UnknownTensorType { tensor: name, type_id: ggml_type.0 });
    }
    let offset = r.u64(Ctx::OfTensor("offset", &name))?;
    Ok(TensorInfo { name, dims, ggml_type, offset })
}

fn read_dims<R: Read>(r: &mut Reader<'_, R>, n_dims: u32, name: &str) -> Result<Vec<u64>, GgufError> {
    let mut dims = Vec::with_capacity(prealloc(n_dims.into()));
    for index in 0..n_dims {
        let dim = r.u64(Ctx::OfTensor("dims", name))?;
        if dim == 0 {
            return Err(GgufError::ZeroDim { tensor: name.to_owned(), index });
        }
        dims.push(dim);
    }
    Ok(dims)
}

/// Every tensor's data must be aligned, inside the file, and its own.
fn check_tensor_data(tensors: &[TensorInfo], data_offset: u64, alignment: u64, file_len: u64) -> Result<(), GgufError> {
    let mut spans = Vec::with_capacity(tensors.len());
    for (index, tensor) in tensors.iter().enumerate() {
        let (start, end) = tensor.data_span(data_offset, alignment, file_len)?;
        spans.push((start, end, index));
    }
    // Once sorted by start, disjoint spans each end before the next begins.
    spans.sort_unstable();
    for pair in spans.windows(2) {
        if let [(_, end, a), (start, _, b)] = *pair
            && start < end
        {
            let name = |i: usize| tensors.get(i).map(|t| t.name.clone()).unwrap_or_default();
            return Err(GgufError::TensorsOverlap { a: name(a), b: name(b) });
        }
    }
    Ok(())
}

fn find<'a>(metadata: &'a [(String, GgufValue)], key: &str) -> Option<&'a GgufValue> {
    metadata.iter().find(|(k, _)| k == key).map(|(_, value)| value)
}

fn first_duplicate<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut sorted: Vec<&str> = names.collect();
    sorted.sort_unstable();
    sorted.windows(2).find_map(|pair| match *pair {
        [a, b] if a == b => Some(a),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const U8: u32 = 0;
    const I8: u32 = 1;
    const U16: u32 = 2;
    const I16: u32 = 3;
    const U32: u32 = 4;
    const I32: u32 = 5;
    const F32: u32 = 6;
    const BOOL: u32 = 7;
    const STRING: u32 = 8;
    const ARRAY: u32 = 9;
    const U64: u32 = 10;
    const I64: u32 = 11;
    const F64: u32 = 12;
    const T_F32: u32 = 0;
    const T_Q4_0: u32 = 2;
    const T_I8: u32 = 24;

    fn gstr(s: &[u8]) -> Vec<u8> {
        let mut out = (s.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(s);
        out
    }

    fn garray(elem_type: u32, count: u64, elems: &[u8]) -> Vec<u8> {
        let mut out = elem_type.to_le_bytes().to_vec();
        out.extend(count.to_le_bytes());
        out.extend_from_slice(elems);
        out
    }

    /// A tiny GGUF writer; counts are public so tests can lie about them.
    struct Writer {
        version: u32,
        n_kv: u64,
        kvs: Vec<u8>,
        n_tensors: u64,
        infos: Vec<u8>,
        pad_to: usize,
        data_len: usize,
    }

    impl Writer {
        fn new() -> Self {
            Writer { version: 3, n_kv: 0, kvs: vec![], n_tensors: 0, infos: vec![], pad_to: 32, data_len: 0 }
        }

        fn kv_raw(mut self, key: &[u8], type_id: u32, payload: &[u8]) -> Self {
            self.kvs.extend(gstr(key));
            self.kvs.extend(type_id.to_le_bytes());
            self.kvs.extend_from_slice(payload);
            self.n_kv += 1;
            self
        }

        fn kv(self, key: &str, type_id: u32, payload: &[u8]) -> Self {
            self.kv_raw(key.as_bytes(), type_id, payload)
        }

        fn tensor(mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Self {
            self.infos.extend(gstr(name.as_bytes()));
            self.infos.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| self.infos.extend(d.to_le_bytes()));
            self.infos.extend(type_id.to_le_bytes());
            self.infos.extend(offset.to_le_bytes());
            self.n_tensors += 1;
            self
        }

        fn data(mut self, len: usize) -> Self {
            self.data_len = len;
            self
        }

        fn build(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(self.version.to_le_bytes());
            out.extend(self.n_tensors.to_le_bytes());
            out.extend(self.n_kv.to_le_bytes());
            out.extend(&self.kvs);
            out.extend(&self.infos);
            out.resize(out.len().next_multiple_of(self.pad_to), 0);
            out.resize(out.len() + self.data_len, 0xAA);
            out
        }
    }

    fn parse(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
        parse_with(bytes, &GgufLimits::default())
    }

    fn parse_with(bytes: &[u8], limits: &GgufLimits) -> Result<GgufHeader, GgufError> {
        read_header(&mut Cursor::new(bytes), bytes.len() as u64, limits)
    }

    /// Two tensors: `a` F32 [4, 2] (32 bytes) at 0, `b` Q4_0 [32, 2] (36 bytes) at 32.
    fn with_tensors(w: Writer) -> Writer {
        w.tensor("a", &[4, 2], T_F32, 0).tensor("b", &[32, 2], T_Q4_0, 32).data(68)
    }

    fn sample() -> Writer {
        let tokens = [gstr(b"<s>"), gstr("é".as_bytes()), gstr(b"")].concat();
        let inner = [garray(U8, 2, &[1, 2]), garray(U8, 0, &[])].concat();
        let w = Writer::new()
            .kv("general.architecture", STRING, &gstr(b"llama"))
            .kv("llama.block_count", U32, &2u32.to_le_bytes())
            .kv("llama.attention.head_count", U64, &9u64.to_le_bytes())
            .kv("general.file_type", U32, &3u32.to_le_bytes())
            .kv("general.alignment", U32, &32u32.to_le_bytes())
            .kv("t.u8", U8, &[200])
            .kv("t.i8", I8, &(-5i8).to_le_bytes())
            .kv("t.u16", U16, &600u16.to_le_bytes())
            .kv("t.i16", I16, &(-600i16).to_le_bytes())
            .kv("t.i32", I32, &(-7i32).to_le_bytes())
            .kv("t.f32", F32, &1.5f32.to_le_bytes())
            .kv("t.bool", BOOL, &[1])
            .kv("t.i64", I64, &(-1i64).to_le_bytes())
            .kv("t.f64", F64, &2.25f64.to_le_bytes())
            .kv("tokenizer.ggml.tokens", ARRAY, &garray(STRING, 3, &tokens))
            .kv("t.nested", ARRAY, &garray(ARRAY, 2, &inner));
        with_tensors(w)
    }

    #[test]
    fn round_trip() {
        let bytes = sample().build();
        let h = parse(&bytes).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.metadata.len(), 16);
        assert_eq!(h.metadata[0].0, "general.architecture");
        assert_eq!(h.architecture(), Some("llama"));
        assert_eq!(h.arch_u64("block_count"), Some(2));
        assert_eq!(h.arch_u64("attention.head_count"), Some(9));
        assert_eq!(h.arch_u64("missing"), None);
        assert_eq!(h.file_type(), Some(3));
        assert_eq!(h.get("t.u8"), Some(&GgufValue::U8(200)));
        assert_eq!(h.get("t.i8"), Some(&GgufValue::I8(-5)));
        assert_eq!(h.get("t.i8").and_then(GgufValue::as_u64), None);
        assert_eq!(h.get("t.u16").and_then(GgufValue::as_u64), Some(600));
        assert_eq!(h.get("t.i16"), Some(&GgufValue::I16(-600)));
        assert_eq!(h.get("t.i32").and_then(GgufValue::as_f64), Some(-7.0));
        assert_eq!(h.get("t.f32").and_then(GgufValue::as_f64), Some(1.5));
        assert_eq!(h.get("t.bool"), Some(&GgufValue::Bool(true)));
        assert_eq!(h.get("t.i64"), Some(&GgufValue::I64(-1)));
        assert_eq!(h.get("t.f64"), Some(&GgufValue::F64(2.25)));
        let tokens = h.get("tokenizer.ggml.tokens").and_then(GgufValue::as_array).unwrap();
        let tokens: Vec<_> = tokens.iter().map(|t| t.as_str().unwrap()).collect();
        assert_eq!(tokens, ["<s>", "é", ""]);
        let nested = h.get("t.nested").and_then(GgufValue::as_array).unwrap();
        assert_eq!(nested[0], GgufValue::Array(vec![GgufValue::U8(1), GgufValue::U8(2)]));
        assert_eq!(nested[1], GgufValue::Array(vec![]));
        assert_eq!(h.alignment, 32);
        assert_eq!(h.data_offset, (bytes.len() - 68) as u64);
        assert_eq!(h.data_offset % 32, 0);
        let b = &h.tensors[1];
        assert_eq!((b.name.as_str(), b.dims.as_slice(), b.offset), ("b", &[32, 2][..], 32));
        assert_eq!(b.ggml_type.name(), Some("Q4_0"));
        assert_eq!(b.byte_size().unwrap(), 36);
        assert_eq!(h.parameter_count(), 8 + 64);
        assert_eq!(h.dominant_type(), Some(GgmlType(T_Q4_0)));
    }

    #[test]
    fn version_2_and_no_tensors_are_accepted() {
        let mut w = Writer::new().kv("k", U8, &[1]);
        w.version = 2;
        let h = parse(&w.build()).unwrap();
        assert_eq!((h.version, h.tensors.len(), h.dominant_type()), (2, 0, None));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().build();
        for len in 0..bytes.len() {
            let prefix = &bytes[..len];
            assert!(parse(prefix).is_err(), "prefix of {len} bytes parsed");
            // A length that promises more than the reader has must not panic either.
            let _ = read_header(&mut Cursor::new(prefix), bytes.len() as u64, &GgufLimits::default());
        }
    }

    #[test]
    fn truncation_message_names_the_field() {
        let err = parse(&[b"GGUF".as_slice(), &3u32.to_le_bytes()].concat()).unwrap_err();
        assert_eq!(err.to_string(), "gguf header is truncated: expected 8 bytes for `tensor_count` at offset 8");
    }

    #[test]
    fn bad_magic() {
        let mut bytes = sample().build();
        bytes[0] = b'X';
        assert!(matches!(parse(&bytes), Err(GgufError::NotGguf { found }) if &found == b"XGUF"));
    }

    #[test]
    fn unsupported_versions() {
        for version in [0, 1, 4, 99, 0x0300_0000] {
            let mut w = sample();
            w.version = version;
            assert!(matches!(parse(&w.build()), Err(GgufError::UnsupportedVersion(v)) if v == version));
        }
    }

    #[test]
    fn huge_string_length() {
        let mut payload = u64::MAX.to_le_bytes().to_vec();
        payload.extend(b"abc");
        let bytes = Writer::new().kv("k", STRING, &payload).build();
        assert!(matches!(parse(&bytes), Err(GgufError::TooLarge { value: u64::MAX, .. })));
        // Under the limit but past the end of the file.
        let bytes = Writer::new().kv("k", STRING, &1000u64.to_le_bytes()).build();
        assert!(matches!(parse(&bytes), Err(GgufError::Truncated { expected: 1000, .. })));
    }

    #[test]
    fn huge_array_count() {
        let bytes = Writer::new().kv("k", ARRAY, &garray(U32, u64::MAX, &[])).build();
        assert!(matches!(parse(&bytes), Err(GgufError::TooLarge { value: u64::MAX, .. })));
        let bytes = Writer::new().kv("k", ARRAY, &garray(U32, 1 << 20, &[0; 16])).build();
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, GgufError::CountPastEnd { count: 1_048_576, needed: 4_194_304, .. }), "{err}");
        assert!(err.to_string().starts_with("the element count of `k` does not fit in the file: "), "{err}");
    }

    #[test]
    fn huge_tensor_and_kv_counts() {
        for (tensors, kvs) in [(u64::MAX, 0), (0, u64::MAX), (1 << 20, 0), (0, 1 << 20)] {
            let mut w = Writer::new();
            (w.n_tensors, w.n_kv) = (tensors, kvs);
            let err = parse(&w.build()).unwrap_err();
            if tensors == u64::MAX || kvs == u64::MAX {
                assert!(matches!(err, GgufError::TooLarge { value: u64::MAX, .. }), "{err}");
            } else {
                assert!(matches!(err, GgufError::CountPastEnd { count: 1_048_576, .. }), "{err}");
            }
        }
    }

    #[test]
    fn too_many_dims() {
        let bytes = Writer::new().tensor("t", &[1; 9], T_F32, 0).data(32).build();
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, GgufError::TooLarge { value: 9, limit: 4, .. }), "{err}");
        assert_eq!(err.to_string(), "`n_dims` of tensor `t` is too large: 9 (limit: 4)");
    }

    #[test]
    fn scalar_tensor_has_one_element() {
        let h = parse(&Writer::new().tensor("s", &[], T_F32, 0).data(4).build()).unwrap();
        assert_eq!((h.parameter_count(), h.tensors[0].byte_size().unwrap()), (1, 4));
    }

    #[test]
    fn unknown_value_types() {
        let bytes = Writer::new().kv("k", 13, &[0; 8]).build();
        assert!(matches!(parse(&bytes), Err(GgufError::UnknownValueType { type_id: 13, .. })));
        let bytes = Writer::new().kv("k", ARRAY, &garray(99, 0, &[])).build();
        assert!(matches!(parse(&bytes), Err(GgufError::UnknownValueType { type_id: 99, .. })));
    }

    #[test]
    fn invalid_bool() {
        let err = parse(&Writer::new().kv("k", BOOL, &[2]).build()).unwrap_err();
        assert_eq!(err.to_string(), "the value of `k` is not a valid boolean: 2");
    }

    #[test]
    fn unknown_ggml_types() {
        for type_id in [4, 5, 31, 42, 1000, u32::MAX] {
            let bytes = Writer::new().tensor("t", &[32], type_id, 0).data(64).build();
            let err = parse(&bytes).unwrap_err();
            assert!(matches!(err, GgufError::UnknownTensorType { type_id: id, .. } if id == type_id), "{err}");
        }
    }

    #[test]
    fn tensor_offset_out_of_bounds() {
        let bytes = Writer::new().tensor("t", &[8], T_F32, 32).data(32).build();
        assert!(matches!(parse(&bytes), Err(GgufError::TensorOutOfBounds { offset: 32, size: 32, .. })));
        // Offsets near `u64::MAX` must not wrap around.
        let bytes = Writer::new().tensor("t", &[8], T_F32, u64::MAX - 31).data(32).build();
        assert!(matches!(parse(&bytes), Err(GgufError::TensorOutOfBounds { .. })));
        let bytes = Writer::new().tensor("t", &[u64::MAX], T_I8, 0).data(32).build();
        assert!(matches!(parse(&bytes), Err(GgufError::TensorOutOfBounds { .. })));
    }

    #[test]
    fn overlapping_tensors() {
        let bytes = Writer::new().tensor("a", &[16], T_F32, 0).tensor("b", &[8], T_F32, 32).data(96).build();
        let err = parse(&bytes).unwrap_err();
        assert_eq!(err.to_string(), "tensors `a` and `b` overlap");
        // Same start, listed in the other order.
        let bytes = Writer::new().tensor("b", &[8], T_F32, 0).tensor("a", &[8], T_F32, 0).data(32).build();
        assert!(matches!(parse(&bytes), Err(GgufError::TensorsOverlap { .. })));
    }

    #[test]
    fn tensors_in_any_order_with_gaps() {
        let bytes = Writer::new().tensor("late", &[8], T_F32, 64).tensor("early", &[8], T_F32, 0).data(96).build();
        assert_eq!(parse(&bytes).unwrap().tensors.len(), 2);
    }

    #[test]
    fn misaligned_offset() {
        let bytes = Writer::new().tensor("a", &[8], T_F32, 0).tensor("b", &[8], T_F32, 33).data(96).build();
        assert!(matches!(parse(&bytes), Err(GgufError::MisalignedTensor { offset: 33, alignment: 32, .. })));
    }

    #[test]
    fn custom_alignment_is_used() {
        let w = Writer::new().kv("general.alignment", U32, &64u32.to_le_bytes());
        let mut w = w.tensor("a", &[8], T_F32, 0).tensor("b", &[8], T_F32, 64).data(96);
        w.pad_to = 64;
        let h = parse(&w.build()).unwrap();
        assert_eq!((h.alignment, h.data_offset % 64), (64, 0));
    }

    #[test]
    fn bad_alignments() {
        for align in [0u32, 3, 48] {
            let bytes = with_tensors(Writer::new().kv("general.alignment", U32, &align.to_le_bytes())).build();
            assert!(matches!(parse(&bytes), Err(GgufError::BadAlignment(a)) if a == u64::from(align)));
        }
        let bytes = with_tensors(Writer::new().kv("general.alignment", U64, &32u64.to_le_bytes())).build();
        assert!(matches!(parse(&bytes), Err(GgufError::WrongType { .. })));
    }

    #[test]
    fn invalid_utf8() {
        let bytes = Writer::new().kv_raw(&[b'k', 0xff], U8, &[0]).build();
        assert!(matches!(parse(&bytes), Err(GgufError::InvalidUtf8 { offset: 32, .. })));
        let bytes = Writer::new().kv("k", STRING, &gstr(&[0xc3, 0x28])).build();
        assert!(matches!(parse(&bytes), Err(GgufError::InvalidUtf8 { .. })));
        let bytes = Writer::new().tensor("\u{fffd}", &[8], T_F32, 0).build();
        let mut bytes = bytes;
        bytes[32..35].copy_from_slice(&[0xff, 0xfe, 0xfd]);
        assert!(matches!(parse(&bytes), Err(GgufError::InvalidUtf8 { .. })));
    }

    /// `depth` arrays, each holding the next, the innermost empty.
    fn nested(depth: usize) -> Vec<u8> {
        let outer = garray(ARRAY, 1, &[]);
        [outer.repeat(depth - 1), garray(U8, 0, &[])].concat()
    }

    #[test]
    fn nesting_limit() {
        assert!(parse(&Writer::new().kv("k", ARRAY, &nested(2)).build()).is_ok());
        let err = parse(&Writer::new().kv("k", ARRAY, &nested(3)).build()).unwrap_err();
        assert_eq!(err.to_string(), "the array nesting depth of `k` is too large: 3 (limit: 2)");
        // Past the hard cap whatever the limits say: no stack overflow.
        let limits = GgufLimits { max_nesting: u32::MAX, ..GgufLimits::default() };
        let bytes = Writer::new().kv("k", ARRAY, &nested(100_000)).build();
        assert!(matches!(parse_with(&bytes, &limits), Err(GgufError::TooLarge { value: 33, limit: 32, .. })));
    }

    #[test]
    fn element_count_overflow() {
        let bytes = Writer::new().tensor("t", &[u64::MAX, u64::MAX], T_F32, 0).data(32).build();
        assert!(matches!(parse(&bytes), Err(GgufError::TensorTooLarge { .. })));
        let t = TensorInfo { name: "t".into(), dims: vec![u64::MAX, 2], ggml_type: GgmlType(T_F32), offset: 0 };
        assert_eq!(t.element_count(), u64::MAX);
        // The count fits but the bytes do not.
        let bytes = Writer::new().tensor("t", &[u64::MAX], T_F32, 0).data(32).build();
        assert!(matches!(parse(&bytes), Err(GgufError::TensorTooLarge { .. })));
    }

    #[test]
    fn zero_dim_is_rejected() {
        let bytes = Writer::new().tensor("t", &[8, 0], T_F32, 0).data(32).build();
        assert!(matches!(parse(&bytes), Err(GgufError::ZeroDim { index: 1, .. })));
    }

    #[test]
    fn partial_block_is_rejected() {
        let bytes = Writer::new().tensor("t", &[16, 4], T_Q4_0, 0).data(64).build();
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, GgufError::PartialBlock { row_len: 16, block_size: 32, .. }), "{err}");
    }

    #[test]
    fn duplicates_are_rejected() {
        let bytes = Writer::new().kv("k", U8, &[1]).kv("j", U8, &[1]).kv("k", U8, &[2]).build();
        assert!(matches!(parse(&bytes), Err(GgufError::DuplicateKey(k)) if k == "k"));
        let bytes = Writer::new().tensor("t", &[8], T_F32, 0).tensor("t", &[8], T_F32, 32).data(64).build();
        assert!(matches!(parse(&bytes), Err(GgufError::DuplicateTensor(t)) if t == "t"));
    }

    #[test]
    fn dominant_type_ties_go_to_lowest_id() {
        let w = Writer::new().tensor("q", &[32, 1], T_Q4_0, 0).tensor("f", &[8, 4], T_F32, 32);
        let h = parse(&w.tensor("norm", &[1024], T_F32, 160).data(160 + 4096).build()).unwrap();
        assert_eq!(h.dominant_type(), Some(GgmlType(T_F32)));
    }

    #[test]
    fn ggml_type_table() {
        let known: Vec<u32> = (0..64).filter(|&id| GgmlType(id).name().is_some()).collect();
        assert_eq!(known.len(), 34);
        let q4_k = GgmlType(12);
        assert_eq!((q4_k.name(), q4_k.block_size(), q4_k.type_size()), (Some("Q4_K"), Some(256), Some(144)));
        assert_eq!(GgmlType(30).to_string(), "BF16");
        assert_eq!(GgmlType(4).to_string(), "ggml type 4");
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let err = read_header_from_path(Path::new("/nonexistent/x.gguf")).unwrap_err();
        assert_eq!(err.to_string(), "cannot open `/nonexistent/x.gguf`");
    }

    #[test]
    fn reads_from_a_real_file_handle() {
        let mut file = tempfile::tempfile().unwrap();
        io::Write::write_all(&mut file, &sample().build()).unwrap();
        let len = file.metadata().unwrap().len();
        assert_eq!(read_header(&mut file, len, &GgufLimits::default()).unwrap().tensors.len(), 2);
    }

    /// Set `LLMCTL_TEST_GGUF` to SmolLM2-135M-Instruct.Q4_1.gguf to run this.
    #[test]
    #[allow(clippy::print_stderr, reason = "a test run says why it skipped")]
    fn real_smollm2_file() {
        let Some(path) = std::env::var_os("LLMCTL_TEST_GGUF") else {
            eprintln!("skipping real_smollm2_file: LLMCTL_TEST_GGUF is unset");
            return;
        };
        let h = read_header_from_path(Path::new(&path)).unwrap();
        assert_eq!((h.version, h.tensors.len(), h.metadata.len()), (3, 272, 33));
        assert_eq!((h.alignment, h.data_offset), (32, 1_785_664));
        assert_eq!(h.architecture(), Some("llama"));
        assert_eq!(h.arch_u64("block_count"), Some(30));
        assert_eq!(h.arch_u64("embedding_length"), Some(576));
        assert_eq!(h.arch_u64("attention.head_count"), Some(9));
        assert_eq!(h.arch_u64("attention.head_count_kv"), Some(3));
        assert_eq!(h.arch_u64("context_length"), Some(8192));
        assert_eq!(h.parameter_count(), 134_515_008);
        let tokens = h.get("tokenizer.ggml.tokens").and_then(GgufValue::as_array).map(<[_]>::len);
        assert_eq!(tokens, Some(49_152));
        assert_eq!(h.file_type(), Some(3)); // MOSTLY_Q4_1
        assert_eq!(h.dominant_type().and_then(GgmlType::name), Some("Q4_1"));
    }
}
