//! The tokenizer builder on small hand-made vocabularies. Real ones, against
//! llama.cpp's own test pairs, are in `tests/it/vocab.rs`.

use super::*;

fn header(entries: Vec<(&str, GgufValue)>) -> GgufHeader {
    let metadata = entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    GgufHeader { version: 3, metadata, tensors: Vec::new(), alignment: 32, data_offset: 0 }
}

fn strings(items: &[&str]) -> GgufValue {
    GgufValue::Array(items.iter().map(|s| GgufValue::String(s.to_string())).collect())
}

fn s(text: &str) -> GgufValue {
    GgufValue::String(text.into())
}

/// `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then `pieces` with `scores`.
fn spm_header(pieces: &[&str], scores: &[f32], extra: Vec<(&str, GgufValue)>) -> GgufHeader {
    let bytes: Vec<String> = (0..=255u8).map(|b| format!("<0x{b:02X}>")).collect();
    let mut tokens: Vec<&str> = vec!["<unk>", "<s>", "</s>"];
    tokens.extend(bytes.iter().map(String::as_str));
    tokens.extend(pieces);
    let mut types = vec![GgufValue::I32(2), GgufValue::I32(3), GgufValue::I32(3)];
    types.extend((0..256).map(|_| GgufValue::I32(6)));
    types.extend(pieces.iter().map(|_| GgufValue::I32(1)));
    let all_scores = [0.0; 259].iter().chain(scores).map(|&v| GgufValue::F32(v)).collect();
    let mut entries = vec![
        ("tokenizer.ggml.model", s("llama")),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.token_type", GgufValue::Array(types)),
        ("tokenizer.ggml.scores", GgufValue::Array(all_scores)),
    ];
    entries.extend(extra);
    header(entries)
}

const FIRST_PIECE: u32 = 259;

fn ids(meta: &GgufTextMeta, text: &str) -> Vec<u32> {
    meta.tokenizer.encode(text, false).unwrap().get_ids().to_vec()
}

#[test]
fn every_pre_tokenizer_regex_compiles_and_every_name_is_in_one_family() {
    let mut names: Vec<&str> = Vec::new();
    for family in pre::PRE_TOKENIZERS {
        for regex in family.regexes {
            isolated(regex).unwrap_or_else(|e| panic!("{:?}: {regex}: {e}", family.names));
        }
        names.extend(family.names);
    }
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count, "a name is in two families");
}

#[test]
fn an_unsupported_model_is_named_with_the_supported_ones() {
    let err = build(&header(vec![("tokenizer.ggml.model", s("rwkv"))])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported GGUF tokenizer model: `rwkv`; llmctl builds `llama` (SentencePiece), `gemma4` and `gpt2` (byte-level BPE)"
    );
    let err = build(&header(vec![])).unwrap_err();
    assert!(err.to_string().starts_with("unsupported GGUF tokenizer model: ``; "), "{err}");
}

#[test]
fn sentencepiece_joins_the_best_scoring_pair_first_and_falls_back_to_bytes() {
    // "▁abc": ▁a (-1) beats bc (-2), so the result is ▁a + bc, never ▁ab.
    let pieces = ["▁", "a", "b", "c", "▁a", "bc", "▁ab", "▁abcd"];
    let meta = build(&spm_header(&pieces, &[-10.0, -10.0, -10.0, -10.0, -1.0, -2.0, -3.0, -0.5], vec![])).unwrap();
    let piece = |p: &str| FIRST_PIECE + pieces.iter().position(|x| *x == p).unwrap() as u32;
    assert_eq!(ids(&meta, "abc"), [piece("▁a"), piece("bc")]);
    // `é` is no piece: its two UTF-8 bytes; the space before it becomes `▁`.
    assert_eq!(ids(&meta, "a é"), [piece("▁a"), piece("▁"), 3 + 0xC3, 3 + 0xA9]);
    assert_eq!(meta.tokenizer.decode(&ids(&meta, "a é"), false).unwrap(), "a é");
    assert_eq!((meta.bos.clone(), meta.eos.clone()), (Some(("<s>".into(), 1)), Some(("</s>".into(), 2))));
    assert!(meta.add_bos);
}

#[test]
fn sentencepiece_merges_rank_by_score_then_by_the_ids_of_the_halves() {
    let pieces = ["a", "b", "ab", "ba", "aba"];
    let vocab = Vocab::read(&spm_header(&pieces, &[0.0, 0.0, -2.0, -1.0, -1.0], vec![])).unwrap();
    let merges = spm::merges_by_score(&vocab, &vocab.ids().unwrap());
    let pair = |l: &str, r: &str| (l.to_string(), r.to_string());
    // `ba` and `aba` tie at -1: token order; `aba`'s splits by the ids of their halves (a+ba, ab+a).
    assert_eq!(merges, [pair("b", "a"), pair("a", "ba"), pair("ab", "a"), pair("a", "b")]);
}

#[test]
fn the_space_prefix_follows_add_space_prefix() {
    let pieces = ["▁", "a"];
    let no_prefix = vec![("tokenizer.ggml.add_space_prefix", GgufValue::Bool(false))];
    let meta = build(&spm_header(&pieces, &[-1.0, -1.0], no_prefix)).unwrap();
    assert_eq!(ids(&meta, "a a"), [FIRST_PIECE + 1, FIRST_PIECE, FIRST_PIECE + 1]);
    let meta = build(&spm_header(&pieces, &[-1.0, -1.0], vec![])).unwrap();
    assert_eq!(ids(&meta, "a"), [FIRST_PIECE, FIRST_PIECE + 1]);
}

fn gpt2_header(pre: Option<&str>, extra: Vec<(&str, GgufValue)>) -> GgufHeader {
    let mut entries = vec![
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.tokens", strings(&["a", "b", "ab", "1", "<|end|>"])),
        ("tokenizer.ggml.token_type", GgufValue::Array([1, 1, 1, 1, 3].map(GgufValue::I32).to_vec())),
        ("tokenizer.ggml.merges", strings(&["a b", "malformed"])),
    ];
    entries.extend(pre.map(|p| ("tokenizer.ggml.pre", s(p))));
    entries.extend(extra);
    header(entries)
}

#[test]
fn byte_level_takes_a_missing_pre_tokenizer_as_default_and_bos_only_from_the_file() {
    let meta = build(&gpt2_header(None, vec![])).unwrap();
    assert_eq!(ids(&meta, "ab1<|end|>"), [2, 3, 4]);
    // Without keys a byte-level vocabulary has no BOS or EOS, and no BOS rule.
    assert_eq!((meta.bos, meta.eos, meta.add_bos), (None, None, false));
    assert_eq!(meta.stop_ids, [4]);
    let keys = vec![
        ("tokenizer.ggml.bos_token_id", GgufValue::U32(0)),
        ("tokenizer.ggml.add_bos_token", GgufValue::Bool(true)),
    ];
    let meta = build(&gpt2_header(Some("qwen2"), keys)).unwrap();
    assert_eq!((meta.bos, meta.add_bos), (Some(("a".into(), 0)), true));
    // Llama 3's pre-tokenizer brings llama.cpp's BOS default.
    assert!(build(&gpt2_header(Some("llama-bpe"), vec![])).unwrap().add_bos);
}

#[test]
fn broken_vocabularies_are_errors() {
    let mut twice = gpt2_header(None, vec![]);
    twice.metadata[1].1 = strings(&["a", "b", "ab", "a", "<|end|>"]);
    assert_eq!(build(&twice).unwrap_err().to_string(), "`tokenizer.ggml.tokens` holds a token twice: `a`");
    let mut short = gpt2_header(None, vec![]);
    short.metadata[2].1 = GgufValue::Array(vec![GgufValue::I32(1)]);
    assert_eq!(build(&short).unwrap_err().to_string(), "`tokenizer.ggml.token_type` has 1 entries for 5 tokens");
    let mut unknown_merge = gpt2_header(None, vec![]);
    unknown_merge.metadata[3].1 = strings(&["a c"]);
    assert!(matches!(build(&unknown_merge), Err(GgufTokenizerError::Build(_))));
}
