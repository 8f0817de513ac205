//! Models split over several GGUF files, as llama.cpp's `gguf-split` writes
//! those over 50 GB: `{prefix}-{NNNNN}-of-{NNNNN}.gguf`, part numbers from 1.
//! The first part holds the model's metadata; every part holds some of its
//! tensors (offsets relative to its own data section) and says where it
//! stands with `split.no` (from 0) and `split.count`, and how many tensors
//! the whole model has with `split.tensors.count`.

use std::collections::HashMap;

use super::*;

pub const SPLIT_NO: &str = "split.no";
pub const SPLIT_COUNT: &str = "split.count";
pub const SPLIT_TENSORS_COUNT: &str = "split.tensors.count";
/// Digits `gguf-split` writes for part numbers (`%05d`; counts are `u16`s, so never more).
const PART_DIGITS: usize = 5;
/// `split.count` is a `u16`.
const MAX_PARTS: u32 = u16::MAX as u32;

/// Where a file's name places it in a split model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitName<'a> {
    /// The name before `-{NNNNN}-of-{NNNNN}`, folders included.
    pub prefix: &'a str,
    /// From 1.
    pub index: u32,
    pub count: u32,
}

impl SplitName<'_> {
    /// The name of part `index` (from 1) of the same model, ending in `extension` (`.gguf`).
    pub fn part(&self, index: u32, extension: &str) -> String {
        format!("{}-{index:0w$}-of-{:0w$}{extension}", self.prefix, self.count, w = PART_DIGITS)
    }
}

/// `name` without its `.gguf` (in any case), if it has one.
pub fn gguf_stem(name: &str) -> Option<&str> {
    let at = name.len().checked_sub(".gguf".len())?;
    (name.is_char_boundary(at) && name[at..].eq_ignore_ascii_case(".gguf")).then(|| &name[..at])
}

/// The split part a name stem (the name without `.gguf`) ends with, if it
/// ends as `gguf-split` names parts: `-`, five digits, `-of-`, five digits,
/// with 1 ≤ part ≤ count ≤ 65535 (so each part has one name).
pub fn split_name(stem: &str) -> Option<SplitName<'_>> {
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, index) = rest.rsplit_once('-')?;
    let number = |digits: &str| -> Option<u32> {
        if digits.len() != PART_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let (index, count) = (number(index)?, number(count)?);
    (!prefix.is_empty() && (1..=count).contains(&index) && count <= MAX_PARTS).then_some(SplitName {
        prefix,
        index,
        count,
    })
}

/// Why one part's header does not say what its place in the model is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    #[error("its header says it is part {} of {said_count} (`{SPLIT_NO}` {said_no}, `{SPLIT_COUNT}` {said_count})", said_no + 1)]
    WrongPart { said_no: u64, said_count: u64 },
    #[error("its header has no integer `{0}`, which every part of a split model carries")]
    NoKey(&'static str),
    #[error("its header says it is part {} of {said_count} of a split model, whose other parts are not here", said_no + 1)]
    Alone { said_no: u64, said_count: u64 },
}

/// Why a set of parts is not one model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgufPartsError {
    #[error("part {index} of {count} is not that part")]
    Part { index: usize, count: usize, source: PartError },
    #[error("tensor `{tensor}` is in part {first} and again in part {again}")]
    DuplicateTensor { tensor: String, first: usize, again: usize },
    #[error("part {index} says the model has {said} tensors (`{SPLIT_TENSORS_COUNT}`), but its parts hold {found}")]
    TensorCount { index: usize, said: u64, found: u64 },
    #[error("a GGUF model has at least one file")]
    Empty,
}

/// A GGUF model's headers, one per file in part order, checked to make one
/// model: each part says its place, each tensor is in exactly one part, and
/// the tensor count is the one the parts promise. A single file is a model
/// of one part.
#[derive(Debug, Clone)]
pub struct GgufParts {
    headers: Vec<GgufHeader>,
}

impl GgufParts {
    pub fn new(headers: Vec<GgufHeader>) -> Result<GgufParts, GgufPartsError> {
        let count = headers.len();
        if count == 0 {
            return Err(GgufPartsError::Empty);
        }
        for (i, header) in headers.iter().enumerate() {
            check_place(header, i, count).map_err(|source| GgufPartsError::Part { index: i + 1, count, source })?;
        }
        check_tensors_once(&headers)?;
        let found = headers.iter().map(|h| h.tensors.len() as u64).sum();
        for (i, header) in headers.iter().enumerate() {
            if let Some(said) = header.get(SPLIT_TENSORS_COUNT).and_then(GgufValue::as_u64).filter(|n| *n != found) {
                return Err(GgufPartsError::TensorCount { index: i + 1, said, found });
            }
        }
        Ok(GgufParts { headers })
    }

    /// The first part's header: the model's metadata.
    pub fn metadata(&self) -> &GgufHeader {
        &self.headers[0]
    }

    /// Each part's header, in part order (tensor offsets are each part's own).
    pub fn headers(&self) -> &[GgufHeader] {
        &self.headers
    }

    /// Every tensor of the model, part after part.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.headers.iter().flat_map(|h| &h.tensors)
    }

    /// Elements over all tensors of all parts, saturating.
    pub fn parameter_count(&self) -> u64 {
        super::header::parameter_count(self.tensors())
    }

    /// As [`GgufHeader::dominant_type`], over all parts.
    pub fn dominant_type(&self) -> Option<GgmlType> {
        super::header::dominant_type(self.tensors())
    }
}

/// Part `i` (from 0) of `count` must say so; a lone file must not say it is one of several.
fn check_place(header: &GgufHeader, i: usize, count: usize) -> Result<(), PartError> {
    let key = |key| header.get(key).and_then(GgufValue::as_u64);
    if count == 1 {
        return match (key(SPLIT_NO).unwrap_or(0), key(SPLIT_COUNT).unwrap_or(1)) {
            (0, 0 | 1) => Ok(()),
            (said_no, said_count) => Err(PartError::Alone { said_no, said_count }),
        };
    }
    let said_no = key(SPLIT_NO).ok_or(PartError::NoKey(SPLIT_NO))?;
    let said_count = key(SPLIT_COUNT).ok_or(PartError::NoKey(SPLIT_COUNT))?;
    if said_no != i as u64 || said_count != count as u64 {
        return Err(PartError::WrongPart { said_no, said_count });
    }
    Ok(())
}

fn check_tensors_once(headers: &[GgufHeader]) -> Result<(), GgufPartsError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, header) in headers.iter().enumerate() {
        for tensor in &header.tensors {
            if let Some(first) = seen.insert(&tensor.name, i + 1) {
                return Err(GgufPartsError::DuplicateTensor { tensor: tensor.name.clone(), first, again: i + 1 });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_are_gguf_splits_own() {
        let part = split_name("Q8_0/Model-Q8_0-00002-of-00003").unwrap();
        assert_eq!((part.prefix, part.index, part.count), ("Q8_0/Model-Q8_0", 2, 3));
        assert_eq!(part.part(1, ".gguf"), "Q8_0/Model-Q8_0-00001-of-00003.gguf");
        for not_a_part in [
            "Model",
            "Model-00000-of-00003",
            "Model-00004-of-00003",
            "-00001-of-00002",
            "M-0001-of-0002",
            "M-000001-of-00002",
        ] {
            assert_eq!(split_name(not_a_part), None, "{not_a_part}");
        }
        assert_eq!(gguf_stem("a.GGUF"), Some("a"));
        assert_eq!(gguf_stem("a.safetensors"), None);
    }

    fn header(split: Option<(u64, u64, u64)>, tensors: &[&str]) -> GgufHeader {
        let metadata = split.map_or_else(Vec::new, |(no, count, total)| {
            vec![
                (SPLIT_NO.to_string(), GgufValue::U16(no as u16)),
                (SPLIT_COUNT.to_string(), GgufValue::U16(count as u16)),
                (SPLIT_TENSORS_COUNT.to_string(), GgufValue::I32(total as i32)),
            ]
        });
        let tensors = tensors
            .iter()
            .map(|name| TensorInfo { name: name.to_string(), dims: vec![32, 2], ggml_type: GgmlType(0), offset: 0 })
            .collect();
        GgufHeader { version: 3, metadata, tensors, alignment: 32, data_offset: 0 }
    }

    #[test]
    fn parts_make_one_model_with_each_tensor_once() {
        let parts = GgufParts::new(vec![header(Some((0, 2, 3)), &["a", "b"]), header(Some((1, 2, 3)), &["c"])]);
        let parts = parts.unwrap();
        assert_eq!((parts.parameter_count(), parts.dominant_type()), (3 * 64, Some(GgmlType(0))));
        assert_eq!(parts.tensors().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        // A single file needs no split keys.
        GgufParts::new(vec![header(None, &["a"])]).unwrap();
    }

    #[test]
    fn parts_that_say_another_place_or_count_are_refused() {
        let wrong = GgufParts::new(vec![header(Some((0, 2, 2)), &["a"]), header(Some((0, 2, 2)), &["b"])]);
        let Err(GgufPartsError::Part { index: 2, count: 2, source }) = wrong else { panic!("{wrong:?}") };
        assert_eq!(source.to_string(), "its header says it is part 1 of 2 (`split.no` 0, `split.count` 2)");
        let keyless = GgufParts::new(vec![header(Some((0, 2, 2)), &["a"]), header(None, &["b"])]);
        assert!(matches!(keyless, Err(GgufPartsError::Part { source: PartError::NoKey(SPLIT_NO), .. })));
        let alone = GgufParts::new(vec![header(Some((0, 3, 1)), &["a"])]).unwrap_err();
        let GgufPartsError::Part { source, .. } = alone else { panic!() };
        assert_eq!(
            source.to_string(),
            "its header says it is part 1 of 3 of a split model, whose other parts are not here"
        );
        let twice = GgufParts::new(vec![header(Some((0, 2, 2)), &["a"]), header(Some((1, 2, 2)), &["a"])]);
        assert_eq!(twice.unwrap_err().to_string(), "tensor `a` is in part 1 and again in part 2");
        let counted = GgufParts::new(vec![header(Some((0, 2, 3)), &["a"]), header(Some((1, 2, 3)), &["b"])]);
        assert_eq!(
            counted.unwrap_err().to_string(),
            "part 1 says the model has 3 tensors (`split.tensors.count`), but its parts hold 2"
        );
    }
}
