//! The header reader against hand-built files: every bound, every kind of
//! malformed input, and (with `LLMCTL_TEST_GGUF`) the real SmolLM2 file.

use super::*;
use std::io::{self, Cursor};
use std::path::Path;

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
