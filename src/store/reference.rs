//! Model references (`org/name[:tag]`): parsed once, validated before they
//! ever become paths or URLs.

use crate::exit::{Diagnostic, ExitStatus};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::quant::{Quant, QuantError};

/// Longest accepted name segment; the Hub caps repository names at 96.
const MAX_SEGMENT_LEN: usize = 96;

/// A validated model name: `name` or `org/name`, each segment made of ASCII
/// letters, digits, `.`, `_` and `-`, starting with a letter or digit (so
/// `..`, absolute paths and hidden files cannot be spelled).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelName(String);

impl ModelName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as one file-name component (`org/name` → `org--name`), for
    /// the store's per-repository lock and partial-download files.
    pub fn flat(&self) -> String {
        self.0.replace('/', "--")
    }

    /// `(org, name)`, with `None` for a single-segment name.
    pub fn parts(&self) -> (Option<&str>, &str) {
        match self.0.split_once('/') {
            Some((org, name)) => (Some(org), name),
            None => (None, &self.0),
        }
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid model reference `{}`: {reason}", text.escape_debug())]
pub struct ReferenceError {
    pub text: String,
    pub reason: String,
}

impl Diagnostic for ReferenceError {
    fn hint(&self) -> Option<String> {
        Some("write `org/name` or `org/name:TAG`, e.g. `HuggingFaceTB/SmolLM2-135M-Instruct:kv_int8`".into())
    }

    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }
}

impl FromStr for ModelName {
    type Err = ReferenceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ReferenceError { text: text.into(), reason };
        if text.is_empty() {
            return Err(fail("the name is empty".into()));
        }
        let segments: Vec<&str> = text.split('/').collect();
        if segments.len() > 2 {
            return Err(fail("a name has at most one `/` (`org/name`)".into()));
        }
        for segment in segments {
            check_segment(segment).map_err(fail)?;
        }
        Ok(ModelName(text.into()))
    }
}

fn check_segment(segment: &str) -> Result<(), String> {
    let Some(first) = segment.chars().next() else {
        return Err("a name segment is empty".into());
    };
    if !first.is_ascii_alphanumeric() {
        return Err(format!("`{}` must start with a letter or digit", segment.escape_debug()));
    }
    if let Some(bad) = segment.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        return Err(format!("`{}` is not allowed in a name", bad.escape_debug()));
    }
    if segment.contains("..") {
        return Err("`..` is not allowed in a name".into());
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Err(format!("a name segment is longer than {MAX_SEGMENT_LEN} characters"));
    }
    Ok(())
}

impl Serialize for ModelName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ModelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A model reference as a user writes it: a name and an optional tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: ModelName,
    pub tag: Option<Quant>,
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tag {
            Some(tag) => write!(f, "{}:{tag}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// Why a `MODEL[:TAG]` argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error(transparent)]
    Name(#[from] ReferenceError),
    #[error(transparent)]
    Quant(#[from] QuantError),
}

impl Diagnostic for RefError {
    fn hint(&self) -> Option<String> {
        match self {
            RefError::Name(e) => e.hint(),
            RefError::Quant(e) => e.hint(),
        }
    }

    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }
}

impl FromStr for ModelRef {
    type Err = RefError;

    /// The name is checked before the tag, so `:kv_int8` reports the missing name.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, tag) = match text.split_once(':') {
            Some((name, tag)) => (name, Some(tag)),
            None => (text, None),
        };
        let name: ModelName = name.parse()?;
        let tag = tag.map(str::parse).transpose().map_err(|e| match e {
            // A malformed tag is shown in full: `model:` says more than an empty string.
            QuantError::Invalid { reason, .. } => QuantError::Invalid { text: text.into(), reason },
            other => other,
        })?;
        Ok(ModelRef { name, tag })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{GgufType, KvScheme};

    #[test]
    fn parses_names_and_tags() {
        let r: ModelRef = "HuggingFaceTB/SmolLM2-135M-Instruct:kv_int8".parse().unwrap();
        assert_eq!(r.name.parts(), (Some("HuggingFaceTB"), "SmolLM2-135M-Instruct"));
        assert_eq!(r.tag, Some(Quant::Kv(KvScheme::Int8)));
        let r: ModelRef = "smollm2:q4_1".parse().unwrap();
        assert_eq!((r.name.parts(), r.tag), ((None, "smollm2"), Some(Quant::Gguf(GgufType::Q4_1))));
        assert_eq!(r.to_string(), "smollm2:Q4_1");
    }

    #[test]
    fn names_that_could_escape_the_store_are_refused() {
        for text in ["", "../x", "a/../b", "/abs", "a/b/c", ".hidden", "a/.b", "a\u{1b}[31m", "a b", "a//b", "a/"] {
            assert!(matches!(text.parse::<ModelRef>(), Err(RefError::Name(_))), "{text:?}");
        }
    }

    #[test]
    fn malformed_tags_are_quantization_errors() {
        for text in ["m:", "m:kv_", "m: kv_int8", "m:kv_int8:x"] {
            let err = text.parse::<ModelRef>().unwrap_err();
            assert!(matches!(err, RefError::Quant(QuantError::Invalid { .. })), "{text:?}: {err}");
        }
        assert!(matches!(":kv_int8".parse::<ModelRef>(), Err(RefError::Name(_))));
    }
}
