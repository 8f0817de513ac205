//! Model references (`org/name[:tag]`): parsed once, validated before they
//! ever become paths or URLs.

use std::fmt;
use std::str::FromStr;

use crate::exit::{Diagnostic, ExitStatus};
use crate::quant::{Quant, QuantError};

pub use crate::ids::{ModelName, ReferenceError};

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
