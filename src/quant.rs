//! The quantization vocabulary — KV-cache schemes for safetensors models and
//! GGUF weight types — and the one rule that decides a run's quantization.
//!
//! Binding order: the name suffix decides first; for GGUF only, the
//! manifest's quantization comes next; otherwise the run is unquantized.
//! Nothing here ever falls back silently: every mismatch is an error that
//! names what would fit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::exit::{Diagnostic, ExitStatus};

/// On-disk layout of a model, as recorded in its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Safetensors,
    Gguf,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Safetensors => "safetensors",
            Format::Gguf => "gguf",
        })
    }
}

/// How the KV cache of a safetensors model is stored during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvScheme {
    Int8,
    Fp8,
}

impl KvScheme {
    pub const ALL: [KvScheme; 2] = [KvScheme::Int8, KvScheme::Fp8];

    pub fn as_str(self) -> &'static str {
        match self {
            KvScheme::Int8 => "kv_int8",
            KvScheme::Fp8 => "kv_fp8",
        }
    }

    /// Bytes one cached element takes (the per-(token, head) scale comes on top).
    pub fn element_bytes(self) -> u64 {
        1
    }
}

impl fmt::Display for KvScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for GgufType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes of one per-(token, KV head) scale: f32, so dequantization adds no
/// rounding of its own.
pub const KV_SCALE_BYTES: u64 = 4;

macro_rules! gguf_types {
    ($($variant:ident = $ftype:literal),+ $(,)?) => {
        /// A GGUF weight type, named as llama.cpp names its file types.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(non_camel_case_types)]
        pub enum GgufType { $($variant),+ }

        impl GgufType {
            pub const ALL: &'static [GgufType] = &[$(GgufType::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(GgufType::$variant => stringify!($variant)),+ }
            }

            /// The type for a `general.file_type` value (llama.cpp's `llama_ftype`).
            pub fn from_file_type(id: u32) -> Option<GgufType> {
                match id { $($ftype => Some(GgufType::$variant),)+ _ => None }
            }
        }
    };
}

gguf_types! {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 7, Q5_0 = 8, Q5_1 = 9,
    Q2_K = 10, Q3_K_S = 11, Q3_K_M = 12, Q3_K_L = 13, Q4_K_S = 14, Q4_K_M = 15,
    Q5_K_S = 16, Q5_K_M = 17, Q6_K = 18, IQ2_XXS = 19, IQ2_XS = 20, Q2_K_S = 21,
    IQ3_XS = 22, IQ3_XXS = 23, IQ1_S = 24, IQ4_NL = 25, IQ3_S = 26, IQ3_M = 27,
    IQ2_S = 28, IQ2_M = 29, IQ4_XS = 30, IQ1_M = 31, BF16 = 32, TQ1_0 = 36, TQ2_0 = 37,
}

impl GgufType {
    /// The type a bare ggml tensor type stands for when a file has no
    /// `general.file_type` (k-quant mixes cannot be told apart this way).
    pub fn from_ggml_type_name(name: &str) -> Option<GgufType> {
        let base = match name {
            "Q4_K" => "Q4_K_M",
            "Q5_K" => "Q5_K_M",
            "Q3_K" => "Q3_K_M",
            other => other,
        };
        GgufType::ALL.iter().copied().find(|t| t.as_str() == base)
    }
}

/// A quantization tag as written after `MODEL:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quant {
    Kv(KvScheme),
    Gguf(GgufType),
}

impl Quant {
    pub fn format(self) -> Format {
        match self {
            Quant::Kv(_) => Format::Safetensors,
            Quant::Gguf(_) => Format::Gguf,
        }
    }
}

impl fmt::Display for Quant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quant::Kv(k) => k.as_str(),
            Quant::Gguf(g) => g.as_str(),
        })
    }
}

/// Why a quantization tag or a request for one was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("invalid quantization `{}`: {reason}", text.escape_debug())]
    Invalid { text: String, reason: &'static str },
    #[error("unsupported quantization `{text}`: {}", supported_for(*family))]
    Unsupported { text: String, family: Format },
    #[error(
        "`{quant}` is a GGUF weight type, but `{model}` is a safetensors model: {}",
        supported_for(Format::Safetensors)
    )]
    WeightTagOnSafetensors { quant: GgufType, model: String },
    #[error(
        "`{quant}` is a KV-cache scheme for safetensors models, but `{model}` is a GGUF model: {}",
        supported_for(Format::Gguf)
    )]
    KvOnGguf { quant: KvScheme, model: String },
}

impl Diagnostic for QuantError {
    fn exit_status(&self) -> ExitStatus {
        ExitStatus::Usage
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            QuantError::Invalid { .. } => "write `MODEL:TAG` with TAG one of `kv_int8`, `kv_fp8` \
                 (safetensors) or a GGUF type such as `Q4_K_M`; leave out `:TAG` to run unquantized"
                .into(),
            QuantError::Unsupported { family: Format::Safetensors, .. } => {
                "use `kv_int8` or `kv_fp8`, or leave out the tag to run with an unquantized cache".into()
            }
            QuantError::Unsupported { family: Format::Gguf, .. } => {
                "pick a GGUF type from the repository's file names, e.g. `Q4_K_M` or `Q8_0`".into()
            }
            QuantError::WeightTagOnSafetensors { model, .. } => format!(
                "run `{model}:kv_int8` or `{model}:kv_fp8` to quantize its KV cache, or pull a GGUF repository for weight quantization"
            ),
            QuantError::KvOnGguf { model, .. } => format!(
                "run `{model}` with its GGUF weight type, or pull the safetensors repository to quantize the KV cache"
            ),
        })
    }
}

fn supported_for(format: Format) -> String {
    match format {
        Format::Safetensors => "safetensors models take the KV-cache schemes `kv_int8` and `kv_fp8`".into(),
        Format::Gguf => "GGUF models take a weight type such as `Q4_K_M`, `Q8_0` or `F16` as their tag".into(),
    }
}

impl FromStr for Quant {
    type Err = QuantError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| QuantError::Invalid { text: text.to_string(), reason };
        if text.is_empty() {
            return Err(invalid("the tag after `:` is empty"));
        }
        if !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid("a tag holds only letters, digits and `_`"));
        }
        if let Some(rest) = text.strip_prefix("kv_") {
            return parse_kv(text, rest).map(Quant::Kv);
        }
        let upper = text.to_ascii_uppercase();
        match GgufType::ALL.iter().find(|t| t.as_str() == upper) {
            Some(t) => Ok(Quant::Gguf(*t)),
            None => Err(QuantError::Unsupported { text: text.into(), family: Format::Gguf }),
        }
    }
}

fn parse_kv(text: &str, scheme: &str) -> Result<KvScheme, QuantError> {
    match scheme {
        "" => Err(QuantError::Invalid { text: text.into(), reason: "`kv_` names no scheme" }),
        "int8" => Ok(KvScheme::Int8),
        "fp8" => Ok(KvScheme::Fp8),
        _ => Err(QuantError::Unsupported { text: text.into(), family: Format::Safetensors }),
    }
}

impl Serialize for Quant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The quantization a run uses, once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// An ordinary run: unquantized cache (safetensors) or the file as is.
    None,
    Kv(KvScheme),
    Gguf(GgufType),
}

/// Apply the binding order: suffix, then (GGUF only) the manifest, then none.
pub fn resolve(
    suffix: Option<Quant>,
    format: Format,
    manifest: Option<Quant>,
    model: &str,
) -> Result<Resolved, QuantError> {
    match (suffix, format) {
        (Some(Quant::Kv(k)), Format::Safetensors) => Ok(Resolved::Kv(k)),
        (Some(Quant::Gguf(g)), Format::Gguf) => Ok(Resolved::Gguf(g)),
        (Some(Quant::Kv(quant)), Format::Gguf) => Err(QuantError::KvOnGguf { quant, model: model.into() }),
        (Some(Quant::Gguf(quant)), Format::Safetensors) => {
            Err(QuantError::WeightTagOnSafetensors { quant, model: model.into() })
        }
        (None, Format::Gguf) => Ok(match manifest {
            Some(Quant::Gguf(g)) => Resolved::Gguf(g),
            _ => Resolved::None,
        }),
        (None, Format::Safetensors) => Ok(Resolved::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Quant, QuantError> {
        s.parse()
    }

    #[test]
    fn known_tags_round_trip_through_their_one_spelling() {
        for text in ["kv_int8", "kv_fp8", "Q4_K_M", "Q4_1", "Q8_0", "F16", "BF16", "IQ4_XS"] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
        assert_eq!(parse("q4_k_m").unwrap(), Quant::Gguf(GgufType::Q4_K_M));
    }

    #[test]
    fn kv_tokens_are_case_sensitive_and_never_gguf() {
        assert!(matches!(parse("KV_INT8"), Err(QuantError::Unsupported { family: Format::Gguf, .. })));
        assert!(matches!(parse("kv_int4"), Err(QuantError::Unsupported { family: Format::Safetensors, .. })));
    }

    #[test]
    fn malformed_tags_are_invalid_not_unsupported() {
        for text in ["", "kv_", " kv_int8", "kv_int8:x", "kv-int8", "Q4\u{7}", "a b"] {
            assert!(matches!(parse(text), Err(QuantError::Invalid { .. })), "{text:?}");
        }
    }

    #[test]
    fn unknown_schemes_are_unsupported() {
        for text in ["Q9_X", "awq", "gptq", "kv_q4"] {
            assert!(matches!(parse(text), Err(QuantError::Unsupported { .. })), "{text:?}");
        }
    }

    #[test]
    fn file_type_ids_match_llama_cpp() {
        assert_eq!(GgufType::from_file_type(3), Some(GgufType::Q4_1));
        assert_eq!(GgufType::from_file_type(15), Some(GgufType::Q4_K_M));
        assert_eq!(GgufType::from_file_type(32), Some(GgufType::BF16));
        assert_eq!(GgufType::from_file_type(4), None);
    }

    #[test]
    fn resolution_follows_the_binding_order() {
        let kv = Some(Quant::Kv(KvScheme::Int8));
        let q4 = Some(Quant::Gguf(GgufType::Q4_1));
        use Format::*;
        assert_eq!(resolve(kv, Safetensors, None, "m"), Ok(Resolved::Kv(KvScheme::Int8)));
        assert_eq!(resolve(None, Safetensors, kv, "m"), Ok(Resolved::None));
        assert_eq!(resolve(None, Gguf, q4, "m"), Ok(Resolved::Gguf(GgufType::Q4_1)));
        assert_eq!(resolve(None, Gguf, None, "m"), Ok(Resolved::None));
        let q8 = Some(Quant::Gguf(GgufType::Q8_0));
        assert_eq!(resolve(q8, Gguf, q4, "m"), Ok(Resolved::Gguf(GgufType::Q8_0)));
        assert!(matches!(resolve(kv, Gguf, q4, "m"), Err(QuantError::KvOnGguf { .. })));
        assert!(matches!(resolve(q4, Safetensors, None, "m"), Err(QuantError::WeightTagOnSafetensors { .. })));
    }
}
