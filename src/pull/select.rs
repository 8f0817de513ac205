//! Choosing which files of a repository (or local directory) make up the
//! model a reference asks for: the safetensors set, or one GGUF file by tag.

use crate::exit::{Diagnostic, ExitStatus};
use crate::hub::RemoteFile;
use crate::quant::{Format, GgufType, Quant, QuantError};
use crate::store::reference::ModelRef;

pub const CONFIG: &str = "config.json";
pub const TOKENIZER: &str = "tokenizer.json";
/// What older Llama/Mistral/Gemma repositories ship instead of `tokenizer.json`.
const SENTENCEPIECE: &str = "tokenizer.model";
/// Small files taken when present; the engine reads them for defaults and chat.
const OPTIONAL: [&str; 4] =
    ["tokenizer_config.json", "generation_config.json", "chat_template.jinja", "special_tokens_map.json"];
/// License files taken when present and small (`show` prints them); a
/// larger one on the hub is left there (local files, of unknown size here, are the user's own).
pub const LICENSES: [&str; 3] = ["LICENSE", "LICENSE.md", "LICENSE.txt"];
const LICENSE_MAX_BYTES: u64 = 64 * 1024;
const DEFAULT_GGUF: GgufType = GgufType::Q4_K_M;

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Quant(#[from] QuantError),
    #[error("`{source_name}` has neither safetensors weights with a `config.json` nor GGUF files")]
    NoModel { source_name: String },
    #[error("`{source_name}` has safetensors weights but no `{file}`")]
    MissingFile { source_name: String, file: &'static str },
    #[error(
        "`{source_name}` has only a SentencePiece `tokenizer.model`, and llmctl reads the tokenizer from `{TOKENIZER}`"
    )]
    OnlySentencePiece { source_name: String },
    #[error("`{source_name}` has no GGUF file for `{tag}` (available: {})", list_or_none(available))]
    TagNotInRepo { source_name: String, tag: GgufType, available: Vec<String> },
    #[error("`{source_name}` has several GGUF files and none is `{DEFAULT_GGUF}`: {}", list_or_none(available))]
    NoDefaultGguf { source_name: String, available: Vec<String> },
    #[error("`{source_name}` has {count} GGUF files for `{tag}` (split files are not supported yet)")]
    SplitGguf { source_name: String, tag: String, count: usize },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

impl Diagnostic for SelectError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            SelectError::Quant(_) => ExitStatus::Usage,
            _ => ExitStatus::Failure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            SelectError::Quant(e) => e.hint(),
            SelectError::OnlySentencePiece { .. } => Some(
                "save the tokenizer with transformers (`AutoTokenizer.from_pretrained(REPO).save_pretrained(DIR)` writes `tokenizer.json`) and import DIR with `llmctl pull ./DIR`, or pull a GGUF of the model".into(),
            ),
            SelectError::TagNotInRepo { available, .. } | SelectError::NoDefaultGguf { available, .. } => {
                available.first().map(|t| format!("pick a tag, e.g. `MODEL:{t}`"))
            }
            _ => None,
        }
    }
}

/// What to fetch: the format and the files, in a stable order.
#[derive(Debug, Clone)]
pub struct Selection {
    pub format: Format,
    pub files: Vec<RemoteFile>,
}

/// Picks the files `reference` means out of `files` (top-level entries only).
pub fn select(reference: &ModelRef, files: &[RemoteFile]) -> Result<Selection, SelectError> {
    let top: Vec<&RemoteFile> = files.iter().filter(|f| !f.name.contains('/')).collect();
    let has_weights = top.iter().any(|f| f.name.ends_with(".safetensors"));
    let has_gguf = top.iter().any(|f| f.name.ends_with(".gguf"));
    let name = reference.name.to_string();
    match reference.tag {
        Some(Quant::Kv(quant)) if !has_weights && has_gguf => Err(QuantError::KvOnGguf { quant, model: name }.into()),
        Some(Quant::Gguf(quant)) if !has_gguf && has_weights => {
            Err(QuantError::WeightTagOnSafetensors { quant, model: name }.into())
        }
        Some(Quant::Gguf(tag)) => select_gguf(&name, &top, Some(tag)),
        _ if has_weights => select_safetensors(&name, &top),
        _ if has_gguf => select_gguf(&name, &top, None),
        _ => Err(SelectError::NoModel { source_name: name }),
    }
}

fn select_safetensors(name: &str, top: &[&RemoteFile]) -> Result<Selection, SelectError> {
    let has = |name: &str| top.iter().any(|f| f.name == name);
    if !has(TOKENIZER) && has(SENTENCEPIECE) {
        return Err(SelectError::OnlySentencePiece { source_name: name.into() });
    }
    for required in [CONFIG, TOKENIZER] {
        if !has(required) {
            return Err(SelectError::MissingFile { source_name: name.into(), file: required });
        }
    }
    let wanted = |f: &&&RemoteFile| {
        [CONFIG, TOKENIZER, crate::formats::safetensors::INDEX_FILE].contains(&f.name.as_str())
            || OPTIONAL.contains(&f.name.as_str())
            || (LICENSES.contains(&f.name.as_str()) && f.size.is_none_or(|n| n <= LICENSE_MAX_BYTES))
            || f.name.ends_with(".safetensors")
    };
    let mut files: Vec<RemoteFile> = top.iter().filter(wanted).map(|f| (*f).clone()).collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Selection { format: Format::Safetensors, files })
}

fn select_gguf(name: &str, top: &[&RemoteFile], tag: Option<GgufType>) -> Result<Selection, SelectError> {
    let typed: Vec<(&RemoteFile, Option<GgufType>)> =
        top.iter().filter(|f| f.name.ends_with(".gguf")).map(|f| (*f, gguf_type_in_name(&f.name))).collect();
    let available = available_tags(&typed);
    let pick = |t: GgufType| typed.iter().filter(|(_, ft)| *ft == Some(t)).map(|(f, _)| *f).collect::<Vec<_>>();
    let chosen = match tag {
        Some(t) => pick(t),
        None if !pick(DEFAULT_GGUF).is_empty() => pick(DEFAULT_GGUF),
        None if typed.len() == 1 => vec![typed[0].0],
        None => return Err(SelectError::NoDefaultGguf { source_name: name.into(), available }),
    };
    match chosen.as_slice() {
        [one] => Ok(Selection { format: Format::Gguf, files: vec![(*one).clone()] }),
        [] => Err(SelectError::TagNotInRepo { source_name: name.into(), tag: tag.unwrap_or(DEFAULT_GGUF), available }),
        many => Err(SelectError::SplitGguf {
            source_name: name.into(),
            tag: tag.unwrap_or(DEFAULT_GGUF).to_string(),
            count: many.len(),
        }),
    }
}

fn available_tags(typed: &[(&RemoteFile, Option<GgufType>)]) -> Vec<String> {
    let mut tags: Vec<String> = typed.iter().filter_map(|(_, t)| t.map(|t| t.as_str().to_string())).collect();
    tags.sort();
    tags.dedup();
    tags
}

/// The GGUF type a file name carries as one of its `.`/`-`-separated parts
/// (`SmolLM2-135M-Instruct.Q4_1.gguf`, `model-q4_k_m.gguf`), case-insensitively.
pub fn gguf_type_in_name(file_name: &str) -> Option<GgufType> {
    split_gguf_name(file_name).1
}

/// A `.gguf` file name's model part and the GGUF type that ends it, if one
/// does: the type is the last part after a `.`, `-` or `_`, in any case
/// (`SmolLM2-135M-Instruct.Q4_1.gguf`, `smollm2-135m-instruct-q4_1.gguf`,
/// `Model-Q4_K_M.gguf`, `model_q8_0.gguf`). Types hold `_` themselves
/// (`Q4_K_M`), so every `_` is tried as a separator, the longest type first.
/// Without a type (or without `.gguf`) the stem comes back whole.
pub fn split_gguf_name(file_name: &str) -> (&str, Option<GgufType>) {
    let Some(stem) = strip_suffix_ignore_case(file_name, ".gguf") else { return (file_name, None) };
    let cuts = stem.char_indices().filter(|(_, c)| matches!(c, '.' | '-' | '_')).map(|(i, _)| i);
    for cut in cuts {
        if let Ok(Quant::Gguf(t)) = stem[cut + 1..].parse::<Quant>() {
            return (&stem[..cut], Some(t));
        }
    }
    (stem, None)
}

fn strip_suffix_ignore_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let at = text.len().checked_sub(suffix.len())?;
    (text.is_char_boundary(at) && text[at..].eq_ignore_ascii_case(suffix)).then(|| &text[..at])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<RemoteFile> {
        names.iter().map(|n| RemoteFile { name: n.to_string(), size: Some(1), sha256: None, git_oid: None }).collect()
    }

    fn names(sel: &Selection) -> Vec<&str> {
        sel.files.iter().map(|f| f.name.as_str()).collect()
    }

    const GGUF_REPO: [&str; 4] = ["README.md", "m.Q4_1.gguf", "m-q4_k_m.gguf", "m.Q8_0.gguf"];

    #[test]
    fn gguf_tags_pick_files_case_insensitively_and_default_to_q4_k_m() {
        let repo = files(&GGUF_REPO);
        let r = |s: &str| s.parse::<ModelRef>().unwrap();
        assert_eq!(names(&select(&r("o/m:q8_0"), &repo).unwrap()), ["m.Q8_0.gguf"]);
        assert_eq!(names(&select(&r("o/m"), &repo).unwrap()), ["m-q4_k_m.gguf"]);
        let err = select(&r("o/m:Q6_K"), &repo).unwrap_err();
        assert_eq!(err.to_string(), "`o/m` has no GGUF file for `Q6_K` (available: Q4_1, Q4_K_M, Q8_0)");
    }

    #[test]
    fn kv_tags_never_resolve_gguf_files() {
        let err = select(&"o/m:kv_int8".parse().unwrap(), &files(&GGUF_REPO)).unwrap_err();
        assert!(matches!(err, SelectError::Quant(QuantError::KvOnGguf { .. })));
    }

    #[test]
    fn safetensors_take_config_tokenizer_weights_and_known_extras() {
        let repo = files(&[
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "README.md",
            "onnx/model.safetensors",
            "generation_config.json",
            "LICENSE",
        ]);
        let sel = select(&"o/m:kv_fp8".parse().unwrap(), &repo).unwrap();
        assert_eq!(
            names(&sel),
            ["LICENSE", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]
        );
        let err = select(&"o/m:Q4_1".parse().unwrap(), &repo).unwrap_err();
        assert!(matches!(err, SelectError::Quant(QuantError::WeightTagOnSafetensors { .. })));
        let no_tok = files(&["config.json", "model.safetensors"]);
        assert!(matches!(
            select(&"o/m".parse().unwrap(), &no_tok),
            Err(SelectError::MissingFile { file: TOKENIZER, .. })
        ));
        let sentencepiece = files(&["config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json"]);
        let err = select(&"o/m".parse().unwrap(), &sentencepiece).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`o/m` has only a SentencePiece `tokenizer.model`, and llmctl reads the tokenizer from `tokenizer.json`"
        );
    }
}
