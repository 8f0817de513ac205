//! Choosing which files of a repository (or local directory) make up the
//! model a reference asks for: the safetensors set, or one GGUF model by
//! tag (a file, or the parts of a split one, at the top or in a folder).

use std::collections::BTreeMap;

use crate::exit::{Diagnostic, ExitStatus};
use crate::formats::gguf::split::{SplitName, gguf_stem, split_name};
use crate::hub::RemoteFile;
use crate::ids::is_plain_relative_path;
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
    #[error("`{source_name}` has several GGUF models for `{tag}`: {}", models.join(", "))]
    SeveralGgufs { source_name: String, tag: String, models: Vec<String> },
    #[error(
        "`{source_name}` has {} of the {count} parts of `{model}`; missing: {}",
        *count as usize - missing_count,
        missing_list(missing, *missing_count)
    )]
    MissingParts { source_name: String, model: String, count: u32, missing: Vec<String>, missing_count: usize },
}

/// `` `a`, `b` `` and how many more there are beyond those named.
fn missing_list(named: &[String], count: usize) -> String {
    let list = named.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    match count.saturating_sub(named.len()) {
        0 => list,
        more => format!("{list} and {more} more"),
    }
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
            SelectError::SeveralGgufs { .. } => {
                Some("download the one you want and import it with `llmctl pull ./FILE.gguf`".into())
            }
            SelectError::MissingParts { .. } => Some(
                "a split GGUF needs all its parts side by side, named `…-NNNNN-of-NNNNN.gguf` as `gguf-split` writes them"
                    .into(),
            ),
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

/// Picks the files `reference` means out of `files`: safetensors from the
/// top level only, GGUF models from the top or from folders.
pub fn select(reference: &ModelRef, files: &[RemoteFile]) -> Result<Selection, SelectError> {
    let top: Vec<&RemoteFile> = files.iter().filter(|f| !f.name.contains('/')).collect();
    let ggufs = gguf_candidates(files);
    let has_weights = top.iter().any(|f| f.name.ends_with(".safetensors"));
    let has_gguf = !ggufs.is_empty();
    let name = reference.name.to_string();
    match reference.tag {
        Some(Quant::Kv(quant)) if !has_weights && has_gguf => Err(QuantError::KvOnGguf { quant, model: name }.into()),
        Some(Quant::Gguf(quant)) if !has_gguf && has_weights => {
            Err(QuantError::WeightTagOnSafetensors { quant, model: name }.into())
        }
        Some(Quant::Gguf(tag)) => select_gguf(&name, &ggufs, Some(tag)),
        _ if has_weights => select_safetensors(&name, &top),
        _ if has_gguf => select_gguf(&name, &ggufs, None),
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

fn select_gguf(name: &str, ggufs: &[Candidate<'_>], tag: Option<GgufType>) -> Result<Selection, SelectError> {
    let available = available_tags(ggufs);
    let of_type = |t: GgufType| ggufs.iter().filter(|c| c.gguf_type == Some(t)).collect::<Vec<_>>();
    let chosen = match tag {
        Some(t) => of_type(t),
        None if !of_type(DEFAULT_GGUF).is_empty() => of_type(DEFAULT_GGUF),
        None if ggufs.len() == 1 => vec![&ggufs[0]],
        None => return Err(SelectError::NoDefaultGguf { source_name: name.into(), available }),
    };
    match chosen.as_slice() {
        [one] => Ok(Selection { format: Format::Gguf, files: one.files(name)? }),
        [] => Err(SelectError::TagNotInRepo { source_name: name.into(), tag: tag.unwrap_or(DEFAULT_GGUF), available }),
        many => Err(SelectError::SeveralGgufs {
            source_name: name.into(),
            tag: tag.unwrap_or(DEFAULT_GGUF).to_string(),
            models: many.iter().map(|c| c.label.clone()).collect(),
        }),
    }
}

fn available_tags(ggufs: &[Candidate<'_>]) -> Vec<String> {
    let mut tags: Vec<String> = ggufs.iter().filter_map(|c| c.gguf_type.map(|t| t.as_str().to_string())).collect();
    tags.sort();
    tags.dedup();
    tags
}

/// One GGUF model a listing offers: a single file, or the parts of a split
/// one (`…-00001-of-00003.gguf` and the rest, in one folder).
struct Candidate<'a> {
    /// The file's name, or `{prefix}-*-of-{NNNNN}.gguf` for a split model.
    label: String,
    gguf_type: Option<GgufType>,
    /// Its prefix and part count, as one part's name gives them (`None` for a single file).
    split: Option<SplitName<'a>>,
    /// By part number (from 1); a single file is part 1.
    parts: BTreeMap<u32, &'a RemoteFile>,
}

impl Candidate<'_> {
    /// The files in part order, or which parts the listing lacks.
    fn files(&self, source_name: &str) -> Result<Vec<RemoteFile>, SelectError> {
        if let Some(split) = self.split {
            check_parts(source_name, &self.label, split, GGUF, |i| self.parts.contains_key(&i))?;
        }
        Ok(self.parts.values().map(|f| (*f).clone()).collect())
    }
}

const GGUF: &str = ".gguf";

/// The GGUF models among `files`, at the top or in folders: single files,
/// and split parts grouped by their name before `-NNNNN-of-NNNNN`. Only
/// plain relative paths count (no hidden files or folders).
fn gguf_candidates(files: &[RemoteFile]) -> Vec<Candidate<'_>> {
    let mut candidates = Vec::new();
    let mut splits: BTreeMap<(&str, u32), Candidate<'_>> = BTreeMap::new();
    let ggufs = files.iter().filter(|f| f.name.ends_with(GGUF) && is_plain_relative_path(&f.name));
    for file in ggufs {
        let stem = &file.name[..file.name.len() - GGUF.len()];
        let gguf_type = gguf_type_of_path(&file.name);
        let Some(part) = split_name(stem) else {
            let parts = BTreeMap::from([(1, file)]);
            candidates.push(Candidate { label: file.name.clone(), gguf_type, split: None, parts });
            continue;
        };
        let label = format!("{}-*-of-{:05}{GGUF}", part.prefix, part.count);
        let candidate = splits.entry((part.prefix, part.count)).or_insert_with(|| Candidate {
            label,
            gguf_type,
            split: Some(part),
            parts: BTreeMap::new(),
        });
        candidate.parts.insert(part.index, file);
    }
    candidates.extend(splits.into_values());
    candidates
}

/// Fails unless `present` has every part of `split`'s model, naming those it lacks.
pub(super) fn check_parts(
    source_name: &str,
    model: &str,
    split: SplitName<'_>,
    extension: &str,
    present: impl Fn(u32) -> bool,
) -> Result<(), SelectError> {
    let missing: Vec<u32> = (1..=split.count).filter(|i| !present(*i)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let named = missing.iter().take(MISSING_NAMED).map(|i| split.part(*i, extension)).collect();
    Err(SelectError::MissingParts {
        source_name: source_name.into(),
        model: model.into(),
        count: split.count,
        missing: named,
        missing_count: missing.len(),
    })
}

/// Missing parts a message names before it says how many more there are.
const MISSING_NAMED: usize = 5;

/// The GGUF type of a file: the one its name carries, else the one its
/// folder's name is or ends with (`Q4_K_M/model.gguf`, `Model-Q4_K_M/model.gguf`).
fn gguf_type_of_path(path: &str) -> Option<GgufType> {
    let (folder, file) = match path.rsplit_once('/') {
        Some((folder, file)) => (Some(folder), file),
        None => (None, path),
    };
    let folder = folder.map(|f| f.rsplit('/').next().unwrap_or(f));
    gguf_type_in_name(file).or_else(|| {
        let folder = folder?;
        match folder.parse::<Quant>() {
            Ok(Quant::Gguf(t)) => Some(t),
            _ => type_suffix(folder).1,
        }
    })
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
/// A split part's `-NNNNN-of-NNNNN` comes off first
/// (`Model-Q8_0-00001-of-00003.gguf` is `Model` and `Q8_0`).
/// Without a type (or without `.gguf`) the stem comes back whole.
pub fn split_gguf_name(file_name: &str) -> (&str, Option<GgufType>) {
    let Some(stem) = gguf_stem(file_name) else { return (file_name, None) };
    type_suffix(split_name(stem).map_or(stem, |part| part.prefix))
}

/// `stem` without the GGUF type that ends it after a `.`, `-` or `_`, and that type.
fn type_suffix(stem: &str) -> (&str, Option<GgufType>) {
    let cuts = stem.char_indices().filter(|(_, c)| matches!(c, '.' | '-' | '_')).map(|(i, _)| i);
    for cut in cuts {
        if let Ok(Quant::Gguf(t)) = stem[cut + 1..].parse::<Quant>() {
            return (&stem[..cut], Some(t));
        }
    }
    (stem, None)
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

    /// A large model's repository as bartowski and unsloth lay them out (#16).
    const SPLIT_REPO: [&str; 8] = [
        "README.md",
        "Big-Q4_K_M.gguf",
        "Q8_0/Big-Q8_0-00002-of-00003.gguf",
        "Q8_0/Big-Q8_0-00001-of-00003.gguf",
        "Q8_0/Big-Q8_0-00003-of-00003.gguf",
        "Q6_K/big.gguf",
        "Big-IQ4_XS/Big-IQ4_XS-00001-of-00002.gguf",
        ".cache/Big-F16.gguf",
    ];

    #[test]
    fn split_parts_and_files_in_folders_are_one_model_each_in_part_order() {
        let repo = files(&SPLIT_REPO);
        let r = |s: &str| s.parse::<ModelRef>().unwrap();
        assert_eq!(
            names(&select(&r("o/big:Q8_0"), &repo).unwrap()),
            [
                "Q8_0/Big-Q8_0-00001-of-00003.gguf",
                "Q8_0/Big-Q8_0-00002-of-00003.gguf",
                "Q8_0/Big-Q8_0-00003-of-00003.gguf"
            ]
        );
        // The folder names the type when the file name does not.
        assert_eq!(names(&select(&r("o/big:Q6_K"), &repo).unwrap()), ["Q6_K/big.gguf"]);
        // Single files resolve as before; hidden folders are not looked in.
        assert_eq!(names(&select(&r("o/big"), &repo).unwrap()), ["Big-Q4_K_M.gguf"]);
        let err = select(&r("o/big:F16"), &repo).unwrap_err();
        assert_eq!(err.to_string(), "`o/big` has no GGUF file for `F16` (available: IQ4_XS, Q4_K_M, Q6_K, Q8_0)");
    }

    #[test]
    fn a_split_model_missing_parts_or_a_tag_with_two_models_is_an_error() {
        let repo = files(&SPLIT_REPO);
        let err = select(&"o/big:IQ4_XS".parse().unwrap(), &repo).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`o/big` has 1 of the 2 parts of `Big-IQ4_XS/Big-IQ4_XS-*-of-00002.gguf`; missing: `Big-IQ4_XS/Big-IQ4_XS-00002-of-00002.gguf`"
        );
        let sparse = files(&["m-00001-of-00009.gguf", "m-00009-of-00009.gguf"]);
        let err = select(&"o/m".parse().unwrap(), &sparse).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`o/m` has 2 of the 9 parts of `m-*-of-00009.gguf`; missing: `m-00002-of-00009.gguf`, `m-00003-of-00009.gguf`, \
             `m-00004-of-00009.gguf`, `m-00005-of-00009.gguf`, `m-00006-of-00009.gguf` and 2 more"
        );
        let two = files(&["m-Q8_0.gguf", "Q8_0/m-Q8_0-00001-of-00001.gguf"]);
        let err = select(&"o/m:Q8_0".parse().unwrap(), &two).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`o/m` has several GGUF models for `Q8_0`: m-Q8_0.gguf, Q8_0/m-Q8_0-*-of-00001.gguf"
        );
    }

    #[test]
    fn split_names_lose_their_part_numbers_before_the_type_is_read() {
        assert_eq!(split_gguf_name("Model-Q8_0-00001-of-00003.gguf"), ("Model", Some(GgufType::Q8_0)));
        assert_eq!(split_gguf_name("Model-00002-of-00003.gguf"), ("Model", None));
        assert_eq!(split_gguf_name("SmolLM2-135M-Instruct.Q4_1.gguf"), ("SmolLM2-135M-Instruct", Some(GgufType::Q4_1)));
    }
}
