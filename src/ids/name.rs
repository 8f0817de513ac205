//! Model names (`name` or `org/name`), validated once before they ever
//! become paths or URLs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::exit::{Diagnostic, ExitStatus};

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
        return Err(format!(
            "`{}` is not allowed in a name: use ASCII letters, digits, `.`, `_` and `-`",
            bad.escape_debug()
        ));
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
