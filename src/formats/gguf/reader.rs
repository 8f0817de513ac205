//! Reading the header: every count bounded by [`GgufLimits`] and the bytes
//! left in the file, every number checked, every tensor inside the file.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::*;

pub(super) const MAGIC: [u8; 4] = *b"GGUF";
pub(super) const DEFAULT_ALIGNMENT: u64 = 32;
pub(super) const ALIGNMENT_KEY: &str = "general.alignment";
/// Smallest metadata entry: empty key (8) + value type (4) + one-byte value.
pub(super) const MIN_KV_BYTES: u64 = 13;
/// Smallest tensor info: empty name (8) + `n_dims` (4) + type (4) + offset (8).
pub(super) const MIN_TENSOR_INFO_BYTES: u64 = 24;
/// Each array level is a stack frame, so nesting is capped whatever the
/// caller's limits say, lest a file of nested arrays overflow the stack.
pub(super) const HARD_MAX_NESTING: u32 = 32;
/// Vectors start no bigger than this and grow as elements actually arrive, so
/// a count that passes every check still reserves little before it is backed
/// by bytes.
pub(super) const MAX_PREALLOC: u64 = 4096;
/// Headers are read in many small pieces; buffering keeps them off syscalls.
pub(super) const READ_BUFFER_BYTES: usize = 64 * 1024;

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
pub(super) enum Ctx<'a> {
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
pub(super) struct Reader<'l, R> {
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

pub(super) fn check_limit(value: u64, limit: u64, what: impl FnOnce() -> String) -> Result<(), GgufError> {
    if value <= limit { Ok(()) } else { Err(too_large_error(what(), value, limit)) }
}

pub(super) fn too_large_error(what: String, value: u64, limit: u64) -> GgufError {
    GgufError::TooLarge { what, value, limit }
}

/// Initial capacity for `count` entries; see [`MAX_PREALLOC`].
pub(super) fn prealloc(count: u64) -> usize {
    usize::try_from(count.min(MAX_PREALLOC)).unwrap_or(0)
}

pub(super) fn read_preamble<R: Read>(r: &mut Reader<'_, R>) -> Result<u32, GgufError> {
    let found = r.bytes(Ctx::Field("magic"))?;
    if found != MAGIC {
        return Err(GgufError::NotGguf { found });
    }
    match r.u32(Ctx::Field("version"))? {
        version @ (2 | 3) => Ok(version),
        version => Err(GgufError::UnsupportedVersion(version)),
    }
}

pub(super) fn read_metadata<R: Read>(r: &mut Reader<'_, R>, count: u64) -> Result<Vec<(String, GgufValue)>, GgufError> {
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
pub(super) fn read_value<R: Read>(
    r: &mut Reader<'_, R>,
    type_id: u32,
    depth: u32,
    key: &str,
) -> Result<GgufValue, GgufError> {
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

pub(super) fn unknown_value_type(type_id: u32, key: &str) -> GgufError {
    GgufError::UnknownValueType { what: Ctx::Of("value", key).to_string(), type_id }
}

/// Bytes one value of `type_id` takes at least; `None` for an unknown type.
pub(super) fn min_value_size(type_id: u32) -> Option<u64> {
    match type_id {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        8 | 10..=12 => Some(8),
        9 => Some(12), // element type + count
        _ => None,
    }
}

pub(super) fn read_array<R: Read>(r: &mut Reader<'_, R>, depth: u32, key: &str) -> Result<Vec<GgufValue>, GgufError> {
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
pub(super) fn alignment_of(metadata: &[(String, GgufValue)]) -> Result<u64, GgufError> {
    match find(metadata, ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(&GgufValue::U32(align)) if align.is_power_of_two() => Ok(align.into()),
        Some(&GgufValue::U32(align)) => Err(GgufError::BadAlignment(align.into())),
        Some(_) => Err(GgufError::WrongType { key: ALIGNMENT_KEY, expected: "u32" }),
    }
}

pub(super) fn read_tensor_infos<R: Read>(r: &mut Reader<'_, R>, count: u64) -> Result<Vec<TensorInfo>, GgufError> {
    let mut tensors = Vec::with_capacity(prealloc(count));
    for index in 0..count {
        tensors.push(read_tensor_info(r, index)?);
    }
    match first_duplicate(tensors.iter().map(|t| t.name.as_str())) {
        Some(name) => Err(GgufError::DuplicateTensor(name.to_owned())),
        None => Ok(tensors),
    }
}

pub(super) fn read_tensor_info<R: Read>(r: &mut Reader<'_, R>, index: u64) -> Result<TensorInfo, GgufError> {
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

pub(super) fn read_dims<R: Read>(r: &mut Reader<'_, R>, n_dims: u32, name: &str) -> Result<Vec<u64>, GgufError> {
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
pub(super) fn check_tensor_data(
    tensors: &[TensorInfo],
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<(), GgufError> {
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

pub(super) fn find<'a>(metadata: &'a [(String, GgufValue)], key: &str) -> Option<&'a GgufValue> {
    metadata.iter().find(|(k, _)| k == key).map(|(_, value)| value)
}

pub(super) fn first_duplicate<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut sorted: Vec<&str> = names.collect();
    sorted.sort_unstable();
    sorted.windows(2).find_map(|pair| match *pair {
        [a, b] if a == b => Some(a),
        _ => None,
    })
}
