//! #16: GGUF tokenizers give llama.cpp's ids. Each of llama.cpp's vocabulary
//! test files (`ggml-vocab-NAME.gguf`, from `tests/support/llama_cpp.rs`) is
//! either supported, and then every one of its `.inp`/`.out` pairs must give
//! the same ids, or refused with the error that names what is unsupported.
//!
//! The `.out` ids are the model's own Hugging Face tokenizer's, which
//! llama.cpp's `test-tokenizer-0` requires of llama.cpp too: no BOS, and
//! special tokens in the text not parsed (user-defined ones still are).

#![allow(clippy::print_stderr, reason = "tests report how many pairs match (seen with --nocapture)")]

use std::path::Path;

use llmctl::engine::gguf_text::text_codec;
use llmctl::formats::gguf::tokenizer::{self, GgufTokenizerError};
use llmctl::formats::gguf::{GgufHeader, read_header_from_path};

use crate::support::TestContext;
use crate::support::llama_cpp;
use crate::support::tiny_gguf::{self, Arch};

fn header(name: &str) -> GgufHeader {
    read_header_from_path(&llama_cpp::models_dir().join(format!("ggml-vocab-{name}.gguf"))).unwrap()
}

/// A pair llmctl tokenizes differently: the input, llama.cpp's ids, llmctl's.
type Mismatch = (String, Vec<u32>, Vec<u32>);

/// How many pairs `name` has, and those llmctl gets wrong.
fn mismatches(name: &str) -> (usize, Vec<Mismatch>) {
    let pairs = llama_cpp::vocab_pairs(&llama_cpp::models_dir(), name).expect("the file has test pairs");
    let mut tokenizer = tokenizer::build(&header(name)).unwrap().tokenizer;
    // llama.cpp's `parse_special = false`.
    tokenizer.set_encode_special_tokens(true);
    let wrong = pairs
        .iter()
        .filter_map(|(input, want)| {
            let got = tokenizer.encode(input.as_str(), false).unwrap().get_ids().to_vec();
            (got != *want).then(|| (input.clone(), want.clone(), got))
        })
        .collect();
    (pairs.len(), wrong)
}

#[track_caller]
fn assert_all_pairs_match(name: &str) {
    let (total, wrong) = mismatches(name);
    eprintln!("ggml-vocab-{name}: {}/{total} pairs match", total - wrong.len());
    let report: Vec<String> = wrong
        .iter()
        .map(|(input, want, got)| format!("{input:?}\n  llama.cpp {want:?}\n  llmctl    {got:?}"))
        .collect();
    assert!(wrong.is_empty(), "ggml-vocab-{name}: {} of {total} pairs differ:\n{}", wrong.len(), report.join("\n"));
}

macro_rules! vocab_tests {
    ($($test:ident: $name:literal,)*) => {
        $(#[test]
        fn $test() {
            assert_all_pairs_match($name);
        })*
        /// Every file with test pairs is either in the list above or in [`REFUSED`].
        const SUPPORTED: &[&str] = &[$($name),*];
    };
}

vocab_tests! {
    llama_bpe_llama3: "llama-bpe",
    qwen2: "qwen2",
    qwen35: "qwen35",
    llama_spm_sentencepiece: "llama-spm",
    phi_3_sentencepiece: "phi-3",
    gemma_4: "gemma-4",
    deepseek_llm: "deepseek-llm",
    deepseek_coder: "deepseek-coder",
    command_r: "command-r",
    gpt_2: "gpt-2",
    falcon: "falcon",
    mpt: "mpt",
    starcoder: "starcoder",
    refact: "refact",
}

/// Files llmctl refuses, with the error it gives.
const REFUSED: &[(&str, &str)] = &[
    (
        "bert-bge",
        "unsupported GGUF tokenizer model: `bert`; llmctl builds `llama` (SentencePiece), `gemma4` and `gpt2` (byte-level BPE)",
    ),
    (
        "nomic-bert-moe",
        "unsupported GGUF tokenizer model: `t5`; llmctl builds `llama` (SentencePiece), `gemma4` and `gpt2` (byte-level BPE)",
    ),
];

fn vocab_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            e.unwrap().file_name().to_str()?.strip_prefix("ggml-vocab-")?.strip_suffix(".gguf").map(String::from)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_vocab_file_is_supported_or_refused_by_name() {
    let dir = llama_cpp::models_dir();
    for name in vocab_names(&dir) {
        let has_pairs = llama_cpp::vocab_pairs(&dir, &name).is_some();
        let refused = REFUSED.iter().find(|(n, _)| *n == name);
        match (tokenizer::build(&header(&name)), refused) {
            (Ok(_), None) => assert!(!has_pairs || SUPPORTED.contains(&name.as_str()), "{name}: pairs not checked"),
            (Err(e @ GgufTokenizerError::Unsupported { .. }), Some((_, message))) => {
                assert_eq!(e.to_string(), *message)
            }
            (result, _) => panic!("{name}: {:?} (expected refused: {})", result.err(), refused.is_some()),
        }
    }
}

#[test]
fn an_unknown_pre_tokenizer_is_named_with_the_supported_ones() {
    let mut header = header("llama-bpe");
    let pre = header.metadata.iter_mut().find(|(k, _)| k == "tokenizer.ggml.pre").unwrap();
    pre.1 = llmctl::formats::gguf::GgufValue::String("kimi-k2".into());
    let message = tokenizer::build(&header).unwrap_err().to_string();
    assert!(
        message
            .starts_with("unsupported GGUF pre-tokenizer for `gpt2`: `kimi-k2`; llmctl builds `default`, `llama3`, "),
        "{message}"
    );
    assert!(message.ends_with(", `minicpm5`"), "{message}");
    for name in ["llama-bpe", "qwen2", "qwen35", "tekken", "deepseek-v3", "gpt-4o", "smollm", "command-r"] {
        assert!(message.contains(&format!("`{name}`")), "{name} missing: {message}");
    }
}

/// A raw prompt as llama.cpp's `llama_tokenize(…, add_special = true, parse_special = true)` gives it.
fn raw(name: &str, text: &str) -> Vec<u32> {
    text_codec(&header(name)).unwrap().encode_raw(text).unwrap()
}

#[test]
fn raw_prompts_get_bos_by_the_vocabulary_rule_even_before_a_bos_in_the_text() {
    // SentencePiece: BOS by default; Llama 3: BOS by its pre-tokenizer's default; Qwen2: none.
    assert_eq!(raw("llama-spm", "Hello"), [1, 15043]);
    assert_eq!(raw("llama-spm", "<s>Hello"), [1, 1, 15043]);
    assert_eq!(raw("llama-bpe", "Hello"), [128000, 9906]);
    assert_eq!(raw("llama-bpe", "<|begin_of_text|>Hello"), [128000, 128000, 9906]);
    assert_eq!(raw("qwen2", "Hello"), [9707]);
    // Gemma 4 files say `add_bos_token = false`; llama.cpp adds it anyway.
    assert_eq!(raw("gemma-4", "Hello")[0], 2);
}

#[test]
fn sentencepiece_prefixes_a_space_after_each_special_token_and_phi_3_strips_the_whitespace_after_its_own() {
    let hi = &raw("llama-spm", "Hi")[1..];
    assert_eq!(raw("llama-spm", "Hi</s>Hi"), [&[1][..], hi, &[2], hi].concat());
    let hi = &raw("phi-3", "Hi")[1..];
    // `<|user|>` (32010) swallows the newline; `<|endoftext|>` (32000) does not.
    assert_eq!(raw("phi-3", "<|user|>\nHi"), [&[1, 32010][..], hi].concat());
    let newline_hi = &raw("phi-3", "\nHi")[1..];
    assert_eq!(raw("phi-3", "<|endoftext|>\nHi"), [&[1, 32000][..], newline_hi].concat());
}

#[test]
fn generation_stops_on_every_end_of_generation_token_llama_cpp_knows() {
    let stops = text_codec(&header("llama-bpe")).unwrap().stop_ids;
    // `<|end_of_text|>` (the file's EOS) and `<|eot_id|>`.
    assert_eq!(stops, [128001, 128009]);
    let stops = text_codec(&header("qwen2")).unwrap().stop_ids;
    // `</s>` (an ordinary token of Qwen2's, taken by its text as llama.cpp does), `<|endoftext|>` (EOS), `<|im_end|>`.
    assert_eq!(stops, [128247, 151643, 151645]);
}

/// llama.cpp test inputs run through the CLI per tiny model (each run loads the model).
const CLI_PAIRS: usize = 8;

/// #16: a model with Llama 3's and one with Qwen2's vocabulary (tiny random
/// weights, `tests/support/tiny_gguf.rs`) import and run from the command
/// line, their prompts tokenized as llama.cpp does.
#[test]
fn tiny_ggufs_around_real_vocabularies_pull_and_generate() {
    // Llama 3 adds BOS (128000) to "Hello world" (9906, 1917); Qwen2 does not.
    for (arch, prompt_ids) in [(Arch::Llama, vec![128000, 9906, 1917]), (Arch::Qwen2, vec![9707, 1879])] {
        let prompt_tokens = prompt_ids.len() as u64;
        let ctx = TestContext::new();
        let path = ctx.root.path().join(format!("tiny-{}-Q8_0.gguf", arch.name()));
        tiny_gguf::write(&path, arch, &llama_cpp::models_dir(), 16);
        ctx.run(&["pull", path.to_str().unwrap(), "--name", "tiny"]).success();
        let out = ctx.run(&["run", "tiny", "--raw", "--json", "--max-tokens", "4", "Hello world"]);
        out.success();
        let events: Vec<serde_json::Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        // What the model is given, as scripts see it.
        let (prompt, events) = events.split_first().unwrap();
        assert_eq!(prompt["type"], "prompt", "{arch:?}: {}", out.stdout);
        assert_eq!(prompt["ids"], serde_json::json!(prompt_ids), "{arch:?}");
        let (done, tokens) = events.split_last().unwrap();
        assert_eq!(
            (done["type"].as_str(), done["prompt_tokens"].as_u64()),
            (Some("done"), Some(prompt_tokens)),
            "{arch:?}"
        );
        // llama.cpp's own test inputs through the CLI: the prompt event carries its ids.
        let vocab = match arch {
            Arch::Llama => "llama-bpe",
            Arch::Qwen2 => "qwen2",
        };
        let pairs = llama_cpp::vocab_pairs(&llama_cpp::models_dir(), vocab).unwrap();
        let usable = pairs.iter().filter(|(input, _)| !input.trim().is_empty() && !input.contains('<'));
        for (input, want) in usable.take(CLI_PAIRS) {
            let out = ctx.run(&["run", "tiny", "--raw", "--json", "--max-tokens", "1", "--", input]);
            let first: serde_json::Value = serde_json::from_str(out.success().stdout.lines().next().unwrap()).unwrap();
            let bos: &[u32] = if prompt_ids[0] == 128000 { &[128000] } else { &[] };
            let expected: Vec<u32> = bos.iter().chain(want).copied().collect();
            assert_eq!(first["ids"], serde_json::json!(expected), "{vocab} through the CLI on {input:?}");
        }
        let stop = done["stop_reason"].as_str().unwrap();
        assert!(stop == "max_tokens" && tokens.len() == 4 || stop == "eos" && tokens.len() < 4, "{arch:?}: {stop}");
        assert!(tokens.iter().all(|e| e["type"] == "token" && e["text"].is_string()), "{arch:?}: {}", out.stdout);
    }
}
