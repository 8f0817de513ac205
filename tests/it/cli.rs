//! CLI transcripts without a hub: local imports, list/show/rm, the
//! quantization grammar's errors, output discipline and completions.

use crate::support::TestContext;
use crate::support::models::{self, SMOLLM2_GGUF_SIZE};

pub(crate) fn ctx_with_smollm2_gguf() -> TestContext {
    let ctx = TestContext::new();
    let gguf = models::smollm2_gguf();
    ctx.run(&["pull", gguf.to_str().unwrap(), "--name", "smollm2-gguf"]).success();
    ctx
}

pub(crate) fn ctx_with_tiny_safetensors() -> TestContext {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/tiny"]).success();
    ctx
}

#[test]
fn help_lists_every_subcommand_and_exits_zero() {
    let out = TestContext::new().run(&["--help"]);
    out.success();
    for sub in ["pull", "run", "list", "show", "rm", "completions"] {
        assert!(out.stdout.contains(&format!("  {sub}")), "{sub} missing:\n{}", out.stdout);
    }
    assert_eq!(out.stderr, "");
}

#[test]
fn version_prints_on_stdout() {
    let out = TestContext::new().run(&["--version"]);
    out.assert(0, &format!("llmctl {}\n", env!("CARGO_PKG_VERSION")), "");
}

#[test]
fn usage_errors_exit_2() {
    let out = TestContext::new().run(&["pull"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("required arguments were not provided"), "{}", out.stderr);
}

/// #18: stdout keeps its shape for scripts; stderr tells people what to do.
#[test]
fn empty_store_lists_nothing_and_says_how_to_pull() {
    let ctx = TestContext::new();
    let note =
        "no models in the store yet; pull one with `llmctl pull org/name` or import files with `llmctl pull ./DIR`\n";
    ctx.run(&["list"]).assert(0, " NAME  ID  FORMAT  QUANTIZATION  SIZE  MODIFIED\n", note);
    ctx.run(&["list", "--json"]).assert(0, "[]\n", note);
    ctx.run(&["list", "--names"]).assert(0, "", note);
    ctx.run(&["list", "--quiet"]).assert(0, " NAME  ID  FORMAT  QUANTIZATION  SIZE  MODIFIED\n", "");
}

/// #18: negative numbers reach llmctl's own range checks, not clap's `-- -1` tip.
#[test]
fn negative_sampling_values_get_the_range_message() {
    let ctx = ctx_with_tiny_safetensors();
    ctx.run(&["run", "org/tiny", "--temperature", "-1", "x"]).assert(
        2,
        "",
        "error: `--temperature` must be a number of 0 or more, not -1\n",
    );
    ctx.run(&["run", "org/tiny", "--top-p", "-0.5", "x"]).assert(
        2,
        "",
        "error: `--top-p` must be in 0 < P <= 1, not -0.5\n",
    );
    let out = ctx.run(&["run", "org/tiny", "--max-tokens", "-1", "x"]);
    assert_eq!(out.code, 2);
    assert!(!out.stderr.contains("-- -1"), "{}", out.stderr);
}

/// #18: a name outside the allowed characters says which ones are allowed.
#[test]
fn non_ascii_names_are_refused_naming_the_allowed_characters() {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/modèle"]).assert(
        2,
        "",
        "error: invalid model reference `org/modèle`: `è` is not allowed in a name: use ASCII letters, digits, `.`, `_` and `-`\n\
         hint: write `org/name` or `org/name:TAG`, e.g. `HuggingFaceTB/SmolLM2-135M-Instruct:kv_int8`\n",
    );
}

/// #18: the hub's naming styles of GGUF files (`.`, `-`, `_` before the
/// type, any case) all give the model name without the type, and the type
/// as the model's quantization.
#[test]
fn local_gguf_names_drop_the_gguf_type_in_any_naming_style() {
    let ctx = TestContext::new();
    let source = models::smollm2_gguf();
    for (file, name) in [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"),
        ("smollm2-135m-instruct-q4_1.gguf", "smollm2-135m-instruct"),
        ("Model-Q4_1.gguf", "Model"),
        ("model_q4_1.gguf", "model"),
    ] {
        let dir = ctx.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(file);
        std::fs::hard_link(&source, &path).or_else(|_| std::fs::copy(&source, &path).map(drop)).unwrap();
        let out = ctx.run(&["pull", path.to_str().unwrap()]);
        out.success();
        assert!(out.stderr.starts_with(&format!("importing [ROOT]/{name}/{file} as {name}\n")), "{}", out.stderr);
        assert!(out.stderr.ends_with(&format!("stored {name} (gguf, Q4_1, 98.4 MB)\n")), "{}", out.stderr);
        assert_eq!(ctx.run(&["show", &format!("{name}:q4_1"), "--json"]).json()["quantization"], "Q4_1");
    }
}

/// #18: one word for "unquantized" in text output, and `null` in JSON.
#[test]
fn unquantized_models_say_none_everywhere() {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    let out = ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/tiny"]);
    assert!(out.stderr.contains("stored org/tiny (safetensors, none, "), "{}", out.stderr);
    let list = ctx.run(&["list"]).stdout;
    assert!(list.lines().nth(1).unwrap().contains(" none "), "{list}");
    assert!(ctx.run(&["show", "org/tiny"]).stdout.contains("  quantization     none\n"));
    assert_eq!(ctx.run(&["show", "org/tiny", "--json"]).json()["quantization"], serde_json::Value::Null);
}

/// #18: `--verbose` says why generation stopped in words, not Rust names.
#[test]
fn verbose_stop_reasons_are_words_not_identifiers() {
    let ctx = ctx_with_tiny_safetensors();
    let out = ctx.run(&["run", "org/tiny", "--raw", "--verbose", "--max-tokens", "1", "w3 w4"]);
    out.success();
    let stopped = out.stderr.lines().find(|l| l.starts_with("generated: ")).unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(stopped.starts_with("generated: 1 token in "), "{stopped}");
    let words = ["stopped by `--max-tokens`", "stopped by the model's end-of-text token"];
    assert!(words.iter().any(|w| stopped.ends_with(w)), "{stopped}");
    for identifier in ["MaxTokens", "Eos", "ContextFull", "Some(", " 1 tokens "] {
        assert!(!out.stderr.contains(identifier), "{identifier} in {}", out.stderr);
    }
}

#[test]
fn local_gguf_import_records_format_quantization_and_shape() {
    let ctx = ctx_with_smollm2_gguf();
    let list = ctx.run(&["list", "--json"]).json();
    let entry = &list[0];
    assert_eq!(entry["name"], "smollm2-gguf");
    assert_eq!((entry["format"].as_str(), entry["quantization"].as_str()), (Some("gguf"), Some("Q4_1")));
    assert_eq!(entry["size"], SMOLLM2_GGUF_SIZE);
    let show = ctx.run(&["show", "smollm2-gguf", "--json"]).json();
    assert_eq!(show["architecture"], "llama");
    assert_eq!(show["layers"], 30);
    assert_eq!(show["attention_heads"], 9);
    assert_eq!(show["kv_heads"], 3);
    assert_eq!(show["hidden_size"], 576);
    assert_eq!(show["context_length"], 8192);
    assert_eq!(show["head_dim"], 64);
    assert_eq!(show["parameters"], 134_515_008);
    assert_eq!(show["vocab_size"], 49_152);
    assert_eq!(show["files"][0]["sha256"], models::SMOLLM2_GGUF_SHA256);
    // The tag that matches the file resolves to the same model.
    assert_eq!(ctx.run(&["show", "smollm2-gguf:q4_1", "--json"]).json()["quantization"], "Q4_1");
}

#[test]
fn show_prints_kv_cache_sizes_for_a_context_length() {
    let ctx = ctx_with_tiny_safetensors();
    let show = ctx.run(&["show", "org/tiny:kv_int8", "--json", "--ctx-size", "100"]).json();
    // 2 layers x (K, V) x 2 KV heads x head_dim 16 = 128 values per token.
    assert_eq!(show["kv_cache"]["unquantized"]["bytes_per_token"], 128 * 4);
    assert_eq!(show["kv_cache"]["selected"]["layout"], "kv_int8");
    assert_eq!(show["kv_cache"]["selected"]["bytes_per_token"], 128 + 8 * 4);
    assert_eq!(show["kv_cache"]["selected"]["bytes"], (128 + 32) * 100);
    assert_eq!(show["quantization"], "kv_int8");
    assert_eq!(show["parameters"], models::tiny_parameter_count());
    let text = ctx.run(&["show", "org/tiny"]);
    assert!(text.stdout.contains("  unquantized  f32 (512 B/token, 131.1 kB at 256 tokens)\n"), "{}", text.stdout);
    assert!(text.stdout.contains("  quantization     none\n"), "{}", text.stdout);
}

#[test]
fn kv_suffix_is_a_run_time_choice_on_any_stored_safetensors_model() {
    let ctx = ctx_with_tiny_safetensors();
    for tag in ["kv_int8", "kv_fp8"] {
        let show = ctx.run(&["show", &format!("org/tiny:{tag}"), "--json"]).json();
        assert_eq!(show["quantization"], tag);
    }
    // The plain name stays an ordinary unquantized model.
    assert_eq!(ctx.run(&["show", "org/tiny", "--json"]).json()["quantization"], serde_json::Value::Null);
}

#[test]
fn invalid_quantizations_exit_2_naming_the_text() {
    let ctx = ctx_with_tiny_safetensors();
    let hint = "hint: write `MODEL:TAG` with TAG one of `kv_int8`, `kv_fp8` (safetensors) or a GGUF type such as `Q4_K_M`; leave out `:TAG` to run unquantized\n";
    let cases = [
        ("org/tiny:", "invalid quantization `org/tiny:`: the tag after `:` is empty"),
        ("org/tiny:kv_", "invalid quantization `org/tiny:kv_`: `kv_` names no scheme"),
        ("org/tiny: kv_int8", "invalid quantization `org/tiny: kv_int8`: a tag holds only letters, digits and `_`"),
        ("org/tiny:kv_int8:x", "invalid quantization `org/tiny:kv_int8:x`: a tag holds only letters, digits and `_`"),
        ("org/tiny:kv\u{7}", "invalid quantization `org/tiny:kv\\u{7}`: a tag holds only letters, digits and `_`"),
    ];
    for (spec, message) in cases {
        for cmd in ["run", "show"] {
            ctx.run(&[cmd, spec]).assert(2, "", &format!("error: {message}\n{hint}"));
        }
    }
}

#[test]
fn unsupported_quantizations_exit_2_listing_what_fits() {
    let ctx = ctx_with_tiny_safetensors();
    ctx.run(&["run", "org/tiny:kv_int4"]).assert(
        2,
        "",
        "error: unsupported quantization `kv_int4`: safetensors models take the KV-cache schemes `kv_int8` and `kv_fp8`\n\
         hint: use `kv_int8` or `kv_fp8`, or leave out the tag to run with an unquantized cache\n",
    );
    for tag in ["Q9_X", "awq"] {
        let out = ctx.run(&["run", &format!("org/tiny:{tag}")]);
        assert_eq!(out.code, 2);
        assert!(
            out.stderr.starts_with(&format!(
                "error: unsupported quantization `{tag}`: GGUF models take a weight type such as `Q4_K_M`"
            )),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("\nhint: "), "{}", out.stderr);
    }
}

#[test]
fn weight_tag_on_safetensors_and_kv_on_gguf_are_explicit_errors() {
    let ctx = ctx_with_tiny_safetensors();
    ctx.run(&["run", "org/tiny:Q4_K_M"]).assert(
        2,
        "",
        "error: `Q4_K_M` is a GGUF weight type, but `org/tiny` is a safetensors model: safetensors models take the KV-cache schemes `kv_int8` and `kv_fp8`\n\
         hint: run `org/tiny:kv_int8` or `org/tiny:kv_fp8` to quantize its KV cache, or pull a GGUF repository for weight quantization\n",
    );
    let gguf = ctx_with_smollm2_gguf();
    gguf.run(&["run", "smollm2-gguf:kv_int8"]).assert(
        2,
        "",
        "error: `kv_int8` is a KV-cache scheme for safetensors models, but `smollm2-gguf` is a GGUF model: GGUF models take a weight type such as `Q4_K_M`, `Q8_0` or `F16` as their tag\n\
         hint: run `smollm2-gguf` with its GGUF weight type, or pull the safetensors repository to quantize the KV cache\n",
    );
}

#[test]
fn missing_gguf_weight_tag_hints_to_pull_it() {
    let ctx = ctx_with_smollm2_gguf();
    // `--no-pull`: without it `run` would pull the missing file (`hub::run_pulls_a_missing_model_first_unless_no_pull`).
    ctx.run(&["run", "smollm2-gguf:Q8_0", "--no-pull"]).assert(
        2,
        "",
        "error: `smollm2-gguf:Q8_0` is not in the store (stored: smollm2-gguf (Q4_1))\n\
         hint: a GGUF weight type is a different file: run `llmctl pull smollm2-gguf:Q8_0`\n",
    );
}

#[test]
fn unknown_models_and_bad_names_are_refused() {
    let ctx = TestContext::new();
    ctx.run(&["show", "org/nothing"]).assert(
        2,
        "",
        "error: model `org/nothing` is not in the store\nhint: run `llmctl pull org/nothing` first, or see `llmctl list`\n",
    );
    for bad in ["", "../etc", "/abs/path", "a/b/c"] {
        let out = ctx.run(&["run", bad]);
        assert_eq!(out.code, 2, "{bad:?}");
        assert!(out.stderr.starts_with("error: invalid model reference"), "{}", out.stderr);
        assert!(out.stderr.contains("\nhint: write `org/name`"), "{}", out.stderr);
    }
}

#[test]
fn run_without_a_chat_template_asks_for_raw() {
    let ctx = ctx_with_tiny_safetensors();
    ctx.run(&["run", "org/tiny:kv_fp8", "hi"]).assert(
        1,
        "",
        "running org/tiny:kv_fp8 on cpu (KV cache: kv_fp8, 41.0 kB for 256 tokens)\n\
         error: this model has no chat template\nhint: use `--raw` to send the prompt as it is\n",
    );
}

#[test]
fn run_json_streams_token_events_then_done() {
    let ctx = ctx_with_tiny_safetensors();
    let out = ctx.run(&["run", "org/tiny:kv_int8", "--raw", "--json", "--max-tokens", "6", "w3 w4 w5"]);
    out.success();
    let events: Vec<serde_json::Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (prompt, events) = events.split_first().unwrap();
    assert_eq!((prompt["type"].as_str(), prompt["text"].as_str()), (Some("prompt"), Some("w3 w4 w5")), "{prompt}");
    assert_eq!(prompt["ids"].as_array().unwrap().len(), 3, "{prompt}");
    let (done, tokens) = events.split_last().unwrap();
    assert!(tokens.iter().all(|e| e["type"] == "token" && e["id"].is_u64() && e["text"].is_string()));
    assert_eq!(done["type"], "done");
    assert_eq!(done["generated_tokens"], tokens.len());
    assert_eq!(done["prompt_tokens"], 3);
    assert_eq!(done["device"], "cpu");
    assert_eq!(done["kv_cache"]["scheme"], "kv_int8");
    // 2 layers x (K, V) x 2 KV heads x (16 bytes + one f32 scale) x 256 positions.
    assert_eq!(done["kv_cache"]["allocated_bytes"], 2 * 2 * 2 * (16 + 4) * 256);
    assert!(done["memory"]["host"]["peak_rss_bytes"].as_u64().unwrap() > 0);
    let stop = done["stop_reason"].as_str().unwrap();
    assert!(stop == "max_tokens" && tokens.len() == 6 || stop == "eos" && tokens.len() < 6, "{stop}");
}

#[test]
fn run_errors_come_before_loading() {
    let ctx = ctx_with_tiny_safetensors();
    ctx.run(&["run", "org/tiny", "--raw", "--ctx-size", "100000", "x"]).assert(
        2,
        "",
        "error: `--ctx-size 100000` is beyond the model's context length of 256\nhint: use `--ctx-size 256` or less\n",
    );
    let out = ctx.run(&["run", "org/tiny", "--device", "cuda", "x"]);
    if !cfg!(feature = "cuda") {
        out.assert(
            2,
            "",
            "error: `--device cuda:0` asks for CUDA, but this llmctl was built without CUDA support\n\
             hint: build the CUDA binary with `cargo build --release --features cuda` (see README, \"CUDA\"), or use `--device cpu`\n",
        );
    }
    ctx.run(&["run", "org/tiny", "--device", "tpu", "x"]).assert(
        2,
        "",
        "error: invalid `--device`: `tpu` is not a device: use `cpu`, `cuda`, `cuda:N` or `auto`\n",
    );
    ctx.run(&["run", "org/tiny", "--top-p", "1.5", "x"]).assert(
        2,
        "",
        "error: `--top-p` must be in 0 < P <= 1, not 1.5\n",
    );
}

#[test]
fn run_reports_a_lost_blob_and_how_to_recover() {
    let ctx = ctx_with_tiny_safetensors();
    let show = ctx.run(&["show", "org/tiny", "--json"]).json();
    let tokenizer = show["files"].as_array().unwrap().iter().find(|f| f["name"] == "tokenizer.json").unwrap().clone();
    let blob = ctx.store().join("blobs").join(format!("sha256-{}", tokenizer["sha256"].as_str().unwrap()));
    std::fs::remove_file(&blob).unwrap();
    let out = ctx.run(&["run", "org/tiny", "--raw", "x"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("error: the store has lost `tokenizer.json` of `org/tiny` (blob `[STORE]/blobs/sha256-"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with("hint: pull the model again: `llmctl rm org/tiny` then `llmctl pull org/tiny`\n"),
        "{}",
        out.stderr
    );
}

fn blob_of(ctx: &TestContext, file: &str) -> std::path::PathBuf {
    let show = ctx.run(&["show", "org/tiny", "--json"]).json();
    let entry = show["files"].as_array().unwrap().iter().find(|f| f["name"] == file).unwrap().clone();
    ctx.store().join("blobs").join(format!("sha256-{}", entry["sha256"].as_str().unwrap()))
}

#[test]
fn show_verify_rehashes_every_file_and_run_notices_a_truncated_one() {
    let ctx = ctx_with_tiny_safetensors();
    let ok = ctx.run(&["show", "org/tiny", "--verify", "--json"]).json();
    let states: Vec<&str> = ok["verified"].as_array().unwrap().iter().map(|f| f["state"].as_str().unwrap()).collect();
    assert!(states.len() == 5 && states.iter().all(|s| *s == "intact"), "{states:?}");
    assert!(ctx.run(&["show", "org/tiny", "--json"]).json().get("verified").is_none());
    // One byte flipped (same size; an optional file `run` reads leniently), one file cut short.
    let config = blob_of(&ctx, "generation_config.json");
    let mut bytes = std::fs::read(&config).unwrap();
    bytes[0] ^= 0xFF;
    std::fs::write(&config, bytes).unwrap();
    let weights = blob_of(&ctx, "model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&weights).unwrap().set_len(len - 1).unwrap();
    let out = ctx.run(&["show", "org/tiny", "--verify"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("generation_config.json") && out.stdout.contains("DAMAGED"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("DAMAGED").count(), 2, "{}", out.stdout);
    assert_eq!(
        out.stderr,
        "error: `org/tiny` has missing or damaged files in the store: generation_config.json, model.safetensors\n\
         hint: pull it again: `llmctl rm org/tiny` then `llmctl pull org/tiny`\n"
    );
    let run = ctx.run(&["run", "org/tiny", "--raw", "w3"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(&format!(
            "the store's copy of `model.safetensors` of `org/tiny` is damaged: {} bytes where {len} were stored",
            len - 1
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.ends_with("hint: pull the model again: `llmctl rm org/tiny` then `llmctl pull org/tiny`\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn local_safetensors_import_with_a_kv_tag_records_both_names_on_shared_blobs() {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    let out = ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/tiny:kv_int8", "--json"]);
    out.success();
    let stored = out.json()["stored"].clone();
    assert_eq!(stored[0]["name"], "org/tiny");
    assert_eq!(stored[1]["name"], "org/tiny:kv_int8");
    assert_eq!(stored[0]["id"], stored[1]["id"]);
    assert_eq!(ctx.blob_count(), 6 - 1, "README.md is not taken");
    let names = ctx.run(&["list", "--names"]);
    assert_eq!(names.stdout, "org/tiny\norg/tiny:kv_int8\n");
}

#[test]
fn rm_removes_a_tag_and_frees_only_unshared_blobs() {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/tiny:kv_int8"]).success();
    ctx.run(&["rm", "org/tiny:kv_int8"]).assert(0, "", "removed org/tiny:kv_int8\nfreed 0 B\n");
    assert_eq!(ctx.blob_count(), 5);
    ctx.run(&["rm", "org/tiny"]).success();
    assert_eq!(ctx.blob_count(), 0);
    ctx.run(&["list", "--json", "--quiet"]).assert(0, "[]\n", "");
    assert_eq!(ctx.store_files(), ["lock"]);
}

#[test]
fn rm_of_a_missing_name_removes_nothing() {
    let ctx = ctx_with_tiny_safetensors();
    ctx.run(&["rm", "org/tiny", "org/other"]).assert(
        2,
        "",
        "error: model `org/other` is not in the store\nhint: run `llmctl pull org/other` first, or see `llmctl list`\n",
    );
    ctx.run(&["rm", "org/tiny:kv_int8"]).assert(
        2,
        "",
        "error: `org/tiny:kv_int8` is not in the store (stored: org/tiny)\nhint: `llmctl list` shows what is stored\n",
    );
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "org/tiny\n");
}

#[test]
fn import_of_a_directory_without_a_model_fails_and_stores_nothing() {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("notamodel");
    models::write_dir(&dir, &[("README.md".into(), b"hi".to_vec())]);
    ctx.run(&["pull", dir.to_str().unwrap()]).assert(
        1,
        "",
        "importing [ROOT]/notamodel as notamodel\nerror: `notamodel` has neither safetensors weights with a `config.json` nor GGUF files\n",
    );
    let mut files = models::tiny_llama_repo(1);
    files.retain(|(n, _)| n != "tokenizer.json");
    let dir = ctx.root.path().join("notok");
    models::write_dir(&dir, &files);
    let out = ctx.run(&["pull", dir.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("error: `notok` has safetensors weights but no `tokenizer.json`\n"), "{}", out.stderr);
    assert_eq!(ctx.blob_count(), 0);
}

#[test]
fn a_truncated_weight_file_is_refused_and_nothing_is_stored() {
    let ctx = TestContext::new();
    let mut files = models::tiny_llama_repo(3);
    let weights = files.iter_mut().find(|(n, _)| n == "model.safetensors").unwrap();
    weights.1.truncate(weights.1.len() - 10);
    let dir = ctx.root.path().join("broken");
    models::write_dir(&dir, &files);
    let out = ctx.run(&["pull", dir.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "error: cannot record the pulled model\n  caused by: `model.safetensors` is not a valid safetensors file"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: the files are not a usable model; nothing was stored\n"), "{}", out.stderr);
    // Only the store's lock file, taken to sweep and make the staging area.
    assert_eq!(ctx.store_files(), ["lock"]);
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let ctx = ctx_with_tiny_safetensors();
    let mut child = ctx
        .command(&["list", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn colour_only_when_asked_and_never_on_stdout() {
    let ctx = TestContext::new();
    let out = ctx.run(&["--color", "always", "show", "org/x"]);
    assert!(out.stderr.starts_with("\x1b[1;31merror:\x1b[0m model `org/x`"), "{:?}", out.stderr);
    let plain = TestContext::new().env("NO_COLOR", "1").env("FORCE_COLOR", "1").run(&["show", "org/x"]);
    assert!(plain.stderr.starts_with("error: "), "{:?}", plain.stderr);
}

#[test]
fn quiet_hides_status_but_not_errors_or_data() {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    ctx.run(&["-q", "pull", dir.to_str().unwrap()]).assert(0, "", "");
    assert_eq!(ctx.run(&["-q", "list", "--names"]).stdout, "tiny\n");
    assert_eq!(ctx.run(&["-q", "show", "nope"]).code, 2);
}

/// A store for completion tests: `org/tiny` (safetensors, also as
/// `:kv_int8`) and the SmolLM2 GGUF as `org/gguf` (type `Q4_1`); the script
/// for `shell` written beside it; and the PATH that finds this llmctl.
fn completion_ctx(shell: &str) -> (TestContext, std::path::PathBuf, String) {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/tiny:kv_int8"]).success();
    ctx.run(&["pull", models::smollm2_gguf().to_str().unwrap(), "--name", "org/gguf"]).success();
    let script = ctx.run(&["completions", shell]).success().stdout.clone();
    let script_path = ctx.root.path().join(format!("llmctl.{shell}"));
    std::fs::write(&script_path, script).unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_llmctl")).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    (ctx, script_path, path)
}

/// Each line: the command line typed so far, then what the shell offers
/// (bash shows only what follows the last `:`).
const MODEL_COMPLETIONS: [(&str, &str); 7] = [
    ("llmctl run org/t", "org/tiny org/tiny:kv_int8"),
    // Issue #18: every tag valid for the model's format, stored or not.
    ("llmctl run org/tiny:", "org/tiny:kv_fp8 org/tiny:kv_int8"),
    ("llmctl show --json org/tiny:kv_f", "org/tiny:kv_fp8"),
    ("llmctl run org/gguf:", "org/gguf:Q4_1"),
    // A name the store does not know may be a safetensors model on the hub.
    ("llmctl run hub/new:kv", "hub/new:kv_fp8 hub/new:kv_int8"),
    ("llmctl bench --ctx 512 org/tiny:kv", "org/tiny:kv_fp8 org/tiny:kv_int8"),
    // `rm` offers only what is stored.
    ("llmctl rm org/tiny org/tiny:k", "org/tiny:kv_int8"),
];

fn shell_output(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn bash_completion_completes_models_and_tags_across_the_colon() {
    let (ctx, script_path, path) = completion_ctx("bash");
    let after_colon = |s: &str| s.split(' ').map(|w| w.rsplit(':').next().unwrap().to_string()).collect::<Vec<_>>();
    let mut cases: Vec<(&str, String)> =
        MODEL_COMPLETIONS.iter().map(|(line, want)| (*line, after_colon(want).join(" "))).collect();
    // Words without a colon are offered whole.
    cases[0].1 = "org/tiny org/tiny:kv_int8".into();
    cases.extend([
        ("llmctl run org/tiny hello", String::new()),
        ("llmctl run --max-tokens 8 org/tiny:kv_i", "kv_int8".into()),
        ("llmctl sh", "show".into()),
    ]);
    for (line, expected) in cases {
        let probe = format!(
            "source '{}'\nCOMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n\
             read -ra W <<< \"$COMP_LINE\"; cur=\"${{W[-1]##*:}}\"; [[ \"$COMP_LINE\" == *' ' ]] && cur='' && W+=('')\n\
             COMP_WORDS=(\"${{W[@]}}\"); COMP_CWORD=$(( ${{#W[@]}} - 1 ))\n\
             _llmctl_complete llmctl \"$cur\" ''\necho \"${{COMPREPLY[*]}}\"",
            script_path.display()
        );
        let offered = shell_output(
            std::process::Command::new("bash").arg("-c").arg(&probe).env("PATH", &path).env("LLMCTL_HOME", ctx.store()),
        );
        assert_eq!(offered, expected, "{line}");
    }
}

/// fish and zsh are not on every machine (`.ci/run` installs them); without
/// one its test checks nothing (the drift test still covers the script).
fn have(shell: &str) -> bool {
    std::process::Command::new(shell).arg("-c").arg("exit 0").output().is_ok_and(|o| o.status.success())
}

#[test]
fn fish_completion_offers_the_tags_valid_for_each_model() {
    if !have("fish") {
        return;
    }
    let (ctx, script_path, path) = completion_ctx("fish");
    for (line, expected) in MODEL_COMPLETIONS {
        let probe = format!("source '{}'; complete -C '{line}'", script_path.display());
        let offered = shell_output(
            std::process::Command::new("fish").arg("-c").arg(&probe).env("PATH", &path).env("LLMCTL_HOME", ctx.store()),
        );
        let words: Vec<&str> = offered.lines().map(|l| l.split('\t').next().unwrap()).collect();
        assert_eq!(words.join(" "), expected, "{line}");
    }
}

/// zsh's completion system needs a terminal to run `_arguments`; this drives
/// the model functions the script wires into it, with `compadd` stubbed.
#[test]
fn zsh_completion_offers_the_tags_valid_for_each_model() {
    if !have("zsh") {
        return;
    }
    let (ctx, script_path, path) = completion_ctx("zsh");
    let script = std::fs::read_to_string(&script_path).unwrap();
    assert!(script.contains(":_llmctl_models' \\"), "{script}");
    assert!(script.contains(":_llmctl_stored_models' \\"), "{script}");
    for (line, expected) in MODEL_COMPLETIONS {
        let word = line.rsplit(' ').next().unwrap();
        let function = if line.starts_with("llmctl rm") { "_llmctl_stored_models" } else { "_llmctl_models" };
        let probe = format!(
            "compdef() {{ :; }}; source '{}'\ncompadd() {{ [[ $1 == -- ]] && shift; print -r -- \"$*\"; }}\n\
             PREFIX='{word}'; {function}",
            script_path.display()
        );
        let offered = shell_output(
            std::process::Command::new("zsh").arg("-c").arg(&probe).env("PATH", &path).env("LLMCTL_HOME", ctx.store()),
        );
        // zsh filters by the prefix itself; `rm`'s list is everything stored.
        let matching: Vec<&str> = offered.split(' ').filter(|c| c.starts_with(word)).collect();
        assert_eq!(matching.join(" "), expected, "{line}");
    }
}

#[test]
fn model_completion_of_an_empty_store_is_empty_and_quiet() {
    let ctx = TestContext::new();
    ctx.run(&["list", "--complete", "org/x:"]).assert(0, "org/x:kv_fp8\norg/x:kv_int8\n", "");
    ctx.run(&["list", "--complete", "org/x"]).assert(0, "", "");
}

#[test]
fn gguf_and_safetensors_under_one_name_resolve_each_their_own_way() {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/smol"]).success();
    let gguf = models::smollm2_gguf();
    ctx.run(&["pull", gguf.to_str().unwrap(), "--name", "org/smol:Q4_1"]).success();
    let show = |spec: &str| ctx.run(&["show", spec, "--json"]).json();
    // Plain name and kv tags: the safetensors model, unquantized or with the KV scheme.
    assert_eq!(
        (show("org/smol")["format"].clone(), show("org/smol")["quantization"].clone()),
        ("safetensors".into(), serde_json::Value::Null)
    );
    assert_eq!(show("org/smol:kv_int8")["format"], "safetensors");
    assert_eq!(show("org/smol:kv_int8")["quantization"], "kv_int8");
    // The GGUF weight tag: the GGUF file.
    assert_eq!(show("org/smol:Q4_1")["format"], "gguf");
    assert_eq!(show("org/smol:q4_1")["layers"], 30);
    // A weight tag that was not pulled is a different file, not the safetensors model.
    ctx.run(&["run", "org/smol:Q8_0", "--no-pull"]).assert(
        2,
        "",
        "error: `org/smol:Q8_0` is not in the store (stored: org/smol, org/smol:Q4_1)\n\
         hint: a GGUF weight type is a different file: run `llmctl pull org/smol:Q8_0`\n",
    );
    // A GGUF file cannot be imported under a kv tag.
    let out = ctx.run(&["pull", gguf.to_str().unwrap(), "--name", "org/other:kv_int8"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("`kv_int8` is a KV-cache scheme for safetensors models, but `org/other` is a GGUF model"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_gguf_imported_under_the_wrong_weight_tag_is_refused() {
    let ctx = TestContext::new();
    let gguf = models::smollm2_gguf();
    ctx.run(&["pull", gguf.to_str().unwrap(), "--name", "org/smol:Q8_0"]).assert(
        2,
        "",
        "importing [GGUF] as org/smol:Q8_0\nerror: the GGUF file's own type is `Q4_1`, not `Q8_0`\nhint: pull it as `MODEL:Q4_1`\n"
            .replace("[GGUF]", gguf.to_str().unwrap())
            .as_str(),
    );
    assert_eq!(ctx.blob_count(), 0);
}

#[test]
fn a_tokenizer_that_does_not_parse_is_a_clean_error() {
    let ctx = TestContext::new();
    let dir = ctx.root.path().join("bad-tokenizer");
    let mut files = models::tiny_llama_repo(7);
    for (name, bytes) in &mut files {
        if name == "tokenizer.json" {
            *bytes = br#"{"version": "1.0", "model": {"type": "BPE", "vocab": 3}}"#.to_vec();
        }
    }
    models::write_dir(&dir, &files);
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/bad"]).success();
    ctx.run(&["run", "org/bad", "--raw", "w3"]).assert(
        1,
        "",
        "error: `tokenizer.json` cannot be loaded: invalid type: integer `3`, expected a map at line 1 column 56\n\
         hint: the model's tokenizer files cannot be read: pull it again, and if the repository's own files are broken, tell its authors\n",
    );
}

/// Disk full and permission denied cannot be staged for a root test process;
/// an unwritable blob directory takes the same error path.
#[test]
fn a_store_that_cannot_be_written_fails_naming_the_path_and_keeps_nothing() {
    let ctx = TestContext::new();
    ctx.run(&["list"]).success();
    let blobs = ctx.store().join("blobs");
    let _ = std::fs::remove_dir_all(&blobs);
    std::fs::write(&blobs, b"not a directory").unwrap();
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/tiny"]).assert(
        1,
        "",
        "error: cannot create `[STORE]/blobs`\n  caused by: File exists (os error 17)\n",
    );
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "");
    assert!(std::fs::read_dir(ctx.store().join("staging")).unwrap().next().is_none(), "staging left behind");
}

/// Lays `files` out as the Hugging Face cache does (`models--org--name/`
/// with `blobs/`, `refs/main` and a snapshot of relative links into
/// `blobs/`); returns the snapshot folder.
fn hf_cache_snapshot(hf_hub: &std::path::Path, repo: &str, files: &[(String, Vec<u8>)]) -> std::path::PathBuf {
    use sha2::Digest as _;
    let folder = hf_hub.join(format!("models--{}", repo.replace('/', "--")));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = folder.join("snapshots").join(commit);
    std::fs::create_dir_all(folder.join("blobs")).unwrap();
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(folder.join("refs/main"), commit).unwrap();
    for (name, bytes) in files {
        let etag: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(folder.join("blobs").join(&etag), bytes).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{etag}"), snapshot.join(name)).unwrap();
    }
    snapshot
}

/// Issue #12: reuse what transformers already downloaded.
#[test]
fn a_hugging_face_cache_snapshot_imports_under_its_repository_name_and_runs() {
    let ctx = TestContext::new();
    let hf_hub = ctx.root.path().join("hf/hub");
    let snapshot = hf_cache_snapshot(&hf_hub, "org/tiny", &models::tiny_llama_repo(7));
    let out = ctx.run(&["pull", snapshot.to_str().unwrap()]);
    out.success();
    assert!(
        out.stderr.starts_with(
            "importing [ROOT]/hf/hub/models--org--tiny/snapshots/0123456789abcdef0123456789abcdef01234567 as org/tiny\n"
        ),
        "{}",
        out.stderr
    );
    let show = ctx.run(&["show", "org/tiny", "--json"]).json();
    assert_eq!(show["format"], "safetensors");
    let stored: Vec<&str> = show["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        stored,
        ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    );
    // The stored bytes are the files the links lead to, not the links.
    let direct = TestContext::new();
    let dir = direct.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    direct.run(&["pull", dir.to_str().unwrap(), "--name", "org/tiny"]).success();
    assert_eq!(show["id"], direct.run(&["show", "org/tiny", "--json"]).json()["id"]);
    let tokens = |ctx: &TestContext| {
        let out = ctx.run(&["run", "org/tiny", "--raw", "--max-tokens", "4", "--json", "w3 w4"]);
        out.success();
        out.stdout.lines().filter(|l| l.contains(r#""type":"token""#)).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(tokens(&ctx).len(), 4);
    assert_eq!(tokens(&ctx), tokens(&direct));
    // The repository folder itself means its `refs/main` snapshot.
    ctx.run(&["rm", "org/tiny"]).success();
    let out = ctx.run(&["pull", hf_hub.join("models--org--tiny").to_str().unwrap()]);
    out.success();
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "org/tiny\n");
    // A `refs/main` naming a snapshot that is not there says which folder is missing.
    std::fs::write(hf_hub.join("models--org--tiny/refs/main"), "fedcba9876543210fedcba9876543210fedcba98").unwrap();
    ctx.run(&["pull", hf_hub.join("models--org--tiny").to_str().unwrap()]).assert(
        1,
        "",
        "importing [ROOT]/hf/hub/models--org--tiny as org/tiny\n\
         error: `[ROOT]/hf/hub/models--org--tiny/snapshots/fedcba9876543210fedcba9876543210fedcba98` is neither a directory nor a `.gguf` file\n\
         hint: give a directory with `config.json`, `tokenizer.json` and safetensors weights, or a `.gguf` file\n",
    );
}

#[test]
fn a_cache_snapshot_whose_link_leaves_the_cache_is_refused_naming_it() {
    let ctx = TestContext::new();
    let hf_hub = ctx.root.path().join("hf/hub");
    let mut files = models::tiny_llama_repo(7);
    let tokenizer = files.iter().position(|(n, _)| n == "tokenizer.json").unwrap();
    let (_, bytes) = files.remove(tokenizer);
    let snapshot = hf_cache_snapshot(&hf_hub, "org/tiny", &files);
    let outside = ctx.root.path().join("elsewhere/tokenizer.json");
    std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
    std::fs::write(&outside, bytes).unwrap();
    std::os::unix::fs::symlink(&outside, snapshot.join("tokenizer.json")).unwrap();
    let out = ctx.run(&["pull", snapshot.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.ends_with(
        "error: `tokenizer.json` in the Hugging Face cache links to `[ROOT]/elsewhere/tokenizer.json`, outside the cache folder `[ROOT]/hf/hub/models--org--tiny`\n\
         hint: a cache snapshot links only into its own `blobs/`: re-download it with the Hugging Face tools, or copy the files into a plain folder and import that\n"
    ), "{}", out.stderr);
    assert_eq!((ctx.run(&["list", "--names"]).stdout.as_str(), ctx.blob_count()), ("", 0));
}

/// A model directory whose weights take seconds to copy: a sparse file of
/// `gib` GiB beside the tiny model's small files.
fn slow_import_dir(ctx: &TestContext, gib: u64) -> std::path::PathBuf {
    let dir = ctx.root.path().join("big");
    let mut files = models::tiny_llama_repo(7);
    files.retain(|(n, _)| n != "model.safetensors");
    models::write_dir(&dir, &files);
    let weights = std::fs::File::create(dir.join("model.safetensors")).unwrap();
    weights.set_len(gib << 30).unwrap();
    dir
}

/// Waits until the import has begun writing into its staging area.
fn wait_for_staged_bytes(ctx: &TestContext) {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(30) {
        let staged: u64 = walkdir_sizes(&ctx.store().join("staging"));
        if staged > 1 << 20 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the import never started copying");
}

fn walkdir_sizes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| if e.path().is_dir() { walkdir_sizes(&e.path()) } else { e.metadata().map(|m| m.len()).unwrap_or(0) })
        .sum()
}

fn signal(child: &std::process::Child, name: &str) {
    let status =
        std::process::Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Issue #12: Ctrl-C during `pull PATH` used to leave the copied bytes in `staging/` forever.
#[test]
fn ctrl_c_during_an_import_cleans_up_and_exits_130() {
    let ctx = TestContext::new();
    let dir = slow_import_dir(&ctx, 8);
    let child = ctx
        .command(&["pull", dir.to_str().unwrap(), "--name", "org/big"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_staged_bytes(&ctx);
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&ctx.root.path().display().to_string(), "[ROOT]");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(
        stderr,
        "importing [ROOT]/big as org/big\nerror: the import was interrupted\nhint: nothing was stored; run the same command again\n"
    );
    assert_eq!(std::fs::read_dir(ctx.store().join("staging")).unwrap().count(), 0, "staging left behind");
    assert_eq!((ctx.run(&["list", "--names"]).stdout.as_str(), ctx.blob_count()), ("", 0));
}

/// Issue #12: after `kill -9` nothing can clean up on the way out, so the next writer sweeps.
#[test]
fn what_a_killed_import_left_is_swept_by_the_next_pull() {
    let ctx = TestContext::new();
    let dir = slow_import_dir(&ctx, 8);
    let mut child = ctx
        .command(&["pull", dir.to_str().unwrap(), "--name", "org/big"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_staged_bytes(&ctx);
    signal(&child, "KILL");
    child.wait().unwrap();
    assert!(walkdir_sizes(&ctx.store().join("staging")) > 0, "the kill left nothing to sweep");
    let tiny = ctx.root.path().join("tiny");
    models::write_dir(&tiny, &models::tiny_llama_repo(7));
    ctx.run(&["pull", tiny.to_str().unwrap(), "--name", "org/tiny"]).success();
    assert_eq!(std::fs::read_dir(ctx.store().join("staging")).unwrap().count(), 0, "staging left behind");
    assert_eq!(ctx.run(&["list", "--names"]).stdout, "org/tiny\n");
    // `rm` is a writer too: it sweeps as well.
    let mut child = ctx
        .command(&["pull", dir.to_str().unwrap(), "--name", "org/big"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_staged_bytes(&ctx);
    signal(&child, "KILL");
    child.wait().unwrap();
    ctx.run(&["rm", "org/tiny"]).success();
    assert_eq!(std::fs::read_dir(ctx.store().join("staging")).unwrap().count(), 0, "staging left behind");
}

#[test]
fn revision_applies_to_hub_models_only_and_must_be_a_ref_name() {
    let ctx = TestContext::new();
    ctx.run(&["pull", "./x", "--revision", "v1"]).assert(
        2,
        "",
        "error: `--revision` only applies to hub models, not to local path `./x`\nhint: drop `--revision`: a local import takes the files as they are\n",
    );
    ctx.run(&["pull", "org/m", "--revision", "../main"]).assert(
        2,
        "",
        "error: invalid revision `../main`: it is not a well-formed ref name\n\
         hint: give a branch, tag or commit as the hub shows it, e.g. `main`, `v1.0`, `refs/pr/1` or a 40-digit commit id\n",
    );
}

/// Issue #12: `HF_HUB_OFFLINE=1` makes no request at all, and says so.
#[test]
fn offline_pulls_say_so_without_touching_the_network() {
    let ctx = TestContext::new().env("HF_HUB_OFFLINE", "1");
    ctx.run(&["pull", "org/tiny"]).assert(
        1,
        "",
        "error: `HF_HUB_OFFLINE` is set, so llmctl did not contact the hub\n\
         hint: unset `HF_HUB_OFFLINE` to pull from the hub; models already in the store run without it, and `llmctl pull ./DIR` imports local files\n",
    );
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &models::tiny_llama_repo(7));
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/tiny"]).success();
}

/// Issue #13: one damaged manifest (here `org/tiny:kv_int8`) is that tag's
/// problem only: the untagged sibling and other models list, show, run and
/// rm as before; `list` shows the damaged tag with a hint; `show --verify`
/// names it; `rm` of the damaged tag removes it.
#[test]
fn a_damaged_manifest_is_one_tags_problem_and_rm_removes_it() {
    let ctx = TestContext::new();
    let tiny = ctx.root.path().join("tiny");
    models::write_dir(&tiny, &models::tiny_llama_repo(7));
    ctx.run(&["pull", tiny.to_str().unwrap(), "--name", "org/tiny:kv_int8"]).success();
    let other = ctx.root.path().join("other");
    models::write_dir(&other, &models::tiny_llama_repo(8));
    ctx.run(&["pull", other.to_str().unwrap(), "--name", "org/other"]).success();
    let damaged = ctx.store().join("manifests/org/tiny/kv_int8.json");
    std::fs::write(&damaged, br#"{"schema_version": 1}"#).unwrap();
    let warning = "warning: the manifest of `org/tiny:kv_int8` is damaged: `[STORE]/manifests/org/tiny/kv_int8.json` \
                   (manifest is not valid JSON for schema 1)\n\
                   hint: remove it with `llmctl rm org/tiny:kv_int8`, then pull the model again\n";
    let list = ctx.run(&["list"]);
    assert_eq!((list.code, list.stderr.as_str()), (0, warning), "{}", list.stdout);
    let row = list.stdout.lines().find(|l| l.contains("org/tiny:kv_int8")).unwrap();
    assert_eq!(row.split_whitespace().take(4).collect::<Vec<_>>(), ["org/tiny:kv_int8", "damaged", "-", "-"], "{row}");
    let json = ctx.run(&["list", "--json"]).json();
    let entry = json.as_array().unwrap().iter().find(|e| e["name"] == "org/tiny:kv_int8").unwrap();
    assert_eq!(entry["damaged"], "manifest is not valid JSON for schema 1");
    assert_eq!(ctx.run(&["list", "--names"]).stdout.lines().count(), 3);

    ctx.run(&["show", "org/tiny"]).success();
    ctx.run(&["show", "org/other", "--verify"]).success();
    ctx.run(&["run", "org/tiny", "--raw", "w3", "--max-tokens", "2"]).success();
    let error = "error: the manifest of `org/tiny:kv_int8` is damaged: `[STORE]/manifests/org/tiny/kv_int8.json`\n  \
                 caused by: manifest is not valid JSON for schema 1\n  \
                 caused by: missing field `name` at line 1 column 21\n\
                 hint: remove it with `llmctl rm org/tiny:kv_int8`, then pull the model again\n";
    ctx.run(&["show", "org/tiny:kv_int8"]).assert(1, "", error);
    assert_eq!(ctx.run(&["run", "org/tiny:kv_int8", "--raw", "w3"]).stderr, error);
    let verify = ctx.run(&["show", "org/tiny", "--verify"]);
    assert_eq!((verify.code, verify.stderr.as_str()), (1, error));
    assert!(
        verify.stdout.ends_with("Manifests\n  org/tiny:kv_int8  DAMAGED (manifest is not valid JSON for schema 1)\n"),
        "{}",
        verify.stdout
    );
    let verify = ctx.run(&["show", "org/tiny", "--verify", "--json"]).json();
    assert_eq!(verify["damaged_manifests"][0]["name"], "org/tiny:kv_int8");

    let blobs = ctx.blob_count();
    let out = ctx.run(&["rm", "org/other"]);
    assert!(out.success().stderr.starts_with("removed org/other\nfreed "), "{}", out.stderr);
    assert!(ctx.blob_count() < blobs);
    ctx.run(&["rm", "org/tiny:kv_int8"]).assert(0, "", "removed org/tiny:kv_int8\nfreed 0 B\n");
    ctx.run(&["list", "--names"]).assert(0, "org/tiny\n", "");
    ctx.run(&["show", "org/tiny", "--verify"]).success();
}

/// A manifest llmctl cannot parse (here one from a newer llmctl) still
/// keeps its blobs: garbage collection keeps every digest its bytes spell.
#[test]
fn garbage_collection_keeps_the_blobs_a_damaged_manifest_names() {
    let ctx = ctx_with_tiny_safetensors();
    let other = ctx.root.path().join("other");
    models::write_dir(&other, &models::tiny_llama_repo(8));
    ctx.run(&["pull", other.to_str().unwrap(), "--name", "org/other"]).success();
    let path = ctx.store().join("manifests/org/tiny/_.json");
    let newer = std::fs::read_to_string(&path).unwrap().replace("\"schema_version\": 1", "\"schema_version\": 2");
    std::fs::write(&path, newer).unwrap();
    let before: Vec<String> = ctx.store_files().into_iter().filter(|f| f.starts_with("blobs/")).collect();
    ctx.run(&["rm", "org/other"]).success();
    let after: Vec<String> = ctx.store_files().into_iter().filter(|f| f.starts_with("blobs/")).collect();
    let kept = std::fs::read_to_string(&path).unwrap();
    for blob in &before {
        let named = kept.contains(blob.trim_start_matches("blobs/sha256-"));
        assert_eq!(after.contains(blob), named, "{blob}: kept iff the damaged manifest names it");
    }
    assert!(after.len() == 5 && after.len() < before.len(), "{before:?} -> {after:?}");
    let show = ctx.run(&["show", "org/tiny"]);
    assert_eq!(show.code, 1);
    assert!(show.stderr.contains("caused by: manifest has schema version 2, newer than this llmctl understands (1)"));
}

/// Issue #13: an empty prompt, from any input path and for either format,
/// is a usage error said before the model loads (it used to panic on GGUF
/// and end in candle's "cat expects at least one tensor" on safetensors).
#[test]
fn an_empty_prompt_is_a_usage_error_on_every_input_path() {
    let ctx = ctx_with_tiny_safetensors();
    let gguf = models::smollm2_gguf();
    ctx.run(&["pull", gguf.to_str().unwrap(), "--name", "smollm2-gguf"]).success();
    let hint =
        "hint: give the text as the PROMPT argument or on standard input, or run without one on a terminal to chat\n";
    for model in ["org/tiny", "smollm2-gguf"] {
        for raw in [&["--raw"][..], &[]] {
            for prompt in ["", " \n\t"] {
                let args = [&["run", model][..], raw, &[prompt]].concat();
                ctx.run(&args).assert(2, "", &format!("error: the prompt argument is empty\n{hint}"));
                let args = [&["run", model][..], raw].concat();
                ctx.run_with_stdin(&args, prompt).assert(
                    2,
                    "",
                    &format!("error: the prompt read from standard input is empty\n{hint}"),
                );
            }
        }
    }
}

/// Rewrites the safetensors header of the stored weights so that
/// `model.norm.weight` has shape `[1, n]` (same bytes, same file size).
fn reshape_norm_in_stored_weights(ctx: &TestContext) {
    let blob = blob_of(ctx, "model.safetensors");
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let shape = header["model.norm.weight"]["shape"].as_array_mut().unwrap();
    shape.insert(0, 1.into());
    let mut text = serde_json::to_string(&header).unwrap();
    assert!(text.len() <= n, "the compact header must fit where the old one was");
    text.push_str(&" ".repeat(n - text.len()));
    bytes[8..8 + n].copy_from_slice(text.as_bytes());
    std::fs::write(&blob, bytes).unwrap();
}

/// Issue #13: with `RUST_BACKTRACE=1` in the environment, an error made by
/// candle (which then captures a backtrace) prints without it;
/// `LLMCTL_BACKTRACE=1` asks for it.
#[test]
fn errors_print_no_backtrace_unless_llmctl_backtrace_asks() {
    let ctx = ctx_with_tiny_safetensors();
    reshape_norm_in_stored_weights(&ctx);
    let quiet = ctx.env("RUST_BACKTRACE", "1");
    let out = quiet.run(&["run", "org/tiny", "--raw", "w3"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: loading the weights failed\n  caused by: shape mismatch for model.norm.weight, expected: [64], got: [1, 64]\n",
    );
    let verbose = quiet.env("LLMCTL_BACKTRACE", "1");
    let out = verbose.run(&["run", "org/tiny", "--raw", "w3"]);
    assert!(out.stderr.contains("candle_core::error::Error::bt"), "{}", out.stderr);
}

/// The tiny model with `template` as its chat template, stored as `org/templated`.
pub(crate) fn ctx_with_chat_template(template: &str) -> TestContext {
    let ctx = TestContext::new();
    let mut files = models::tiny_llama_repo(7);
    let config = serde_json::json!({"add_bos_token": false, "eos_token": "</s>", "chat_template": template});
    files.iter_mut().find(|f| f.0 == "tokenizer_config.json").unwrap().1 = config.to_string().into_bytes();
    let dir = ctx.root.path().join("templated");
    models::write_dir(&dir, &files);
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/templated"]).success();
    ctx
}

/// Issue #13: a chat template is bounded in memory, output and CPU time as
/// well as steps; each bound is an error naming llmctl's limit (a template
/// doubling a string used to abort llmctl with a 2 GiB allocation, exit 134).
#[test]
fn a_runaway_chat_template_is_an_error_naming_the_limit() {
    let hint = "hint: use `--raw` to send the prompt without the template\n";
    let cases = [
        (
            "{% set ns = namespace(s='0123456789abcdef') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "error: the model's chat template needs more than 512 MB of memory to render, llmctl's limit\n",
        ),
        (
            "{% for i in range(20000) %}{{ 'x' * 1000 }}{% endfor %}",
            "error: the model's chat template writes more than 16 MB of text, llmctl's limit\n",
        ),
        (
            "{% set ns = namespace(s='x' * 40000000) %}{% for i in range(100000) %}{% set t = ns.s.upper() %}{% endfor %}",
            "error: the model's chat template ran for more than 10 s of CPU time, llmctl's limit\n",
        ),
        (
            "{% for m in messages %}{% if m.role == 'user' %}{{ raise_exception('roles must alternate') }}{% endif %}{% endfor %}",
            "error: the model's chat template failed\n  caused by: invalid operation: roles must alternate (in chat:1)\n",
        ),
    ];
    for (template, error) in cases {
        let ctx = ctx_with_chat_template(template);
        let out = ctx.run(&["run", "org/templated", "--quiet", "w3"]);
        out.assert(1, "", &format!("{error}{hint}"));
        // The template is the model's only problem: `--raw` runs it.
        ctx.run(&["run", "org/templated", "--raw", "--max-tokens", "2", "w3"]).success();
    }
}

#[test]
fn a_well_behaved_chat_template_renders_through_the_renderer_child() {
    let ctx = ctx_with_chat_template("{% for m in messages %}{{ m.content }}\n{% endfor %}\"w4\"");
    // Newlines and quotes in template and message: the request crosses to the child as escaped JSON.
    let out = ctx.run(&["run", "org/templated", "--max-tokens", "3", "--json", "w3\n\"w3\""]);
    out.success();
    let done: serde_json::Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    // `w3`, `"`, `w3`, `"`, `"`, `w4`, `"`: the whitespace tokenizer splits punctuation off.
    assert_eq!(done["prompt_tokens"], 7, "{done}");
}

/// Issues #18 and #16: one context length everywhere. `show` says what
/// `run` allocates by default and the most it accepts (a GGUF's is what the
/// file declares), and refuses a `--ctx-size` beyond it with `run`'s own
/// message.
#[test]
fn show_says_the_context_run_allocates_and_refuses_more_than_the_model_has() {
    let ctx = ctx_with_smollm2_gguf();
    let out = ctx.run(&["show", "smollm2-gguf"]);
    let line = out.success().stdout.lines().find(|l| l.contains("context length")).unwrap().to_string();
    assert_eq!(line.trim(), "context length   8192 (run allocates 4096 by default, `--ctx-size` up to 8192)");
    let json = ctx.run(&["show", "smollm2-gguf", "--json"]).json();
    assert_eq!(json["context"], serde_json::json!({"default": 4096, "max": 8192}));
    assert_eq!(json["kv_cache"]["selected"]["context_length"], 4096);
    let too_big = "error: `--ctx-size 18446744073709551615` is beyond the model's context length of 8192\n\
                   hint: use `--ctx-size 8192` or less\n";
    ctx.run(&["show", "smollm2-gguf", "--ctx-size", "18446744073709551615"]).assert(2, "", too_big);
    assert_eq!(
        ctx.run(&["run", "smollm2-gguf", "--ctx-size", "8193", "hi"]).stderr,
        too_big.replace("18446744073709551615", "8193")
    );
    ctx.run(&["show", "smollm2-gguf", "--ctx-size", "100"]).success();
}

/// Issue #18: `show` says what Ollama's does: chat template, generation
/// defaults and license of a safetensors model.
#[test]
fn show_prints_the_template_generation_defaults_and_license() {
    let ctx = TestContext::new();
    let mut files = models::tiny_llama_repo(7);
    let template = (1..=15).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
    models::edit_json(&mut files, "tokenizer_config.json", |c| c["chat_template"] = template.clone().into());
    models::edit_json(&mut files, "generation_config.json", |g| {
        *g = serde_json::json!({"eos_token_id": [2, 1], "temperature": 0.7, "top_p": 0.9, "do_sample": true})
    });
    files.push(("LICENSE".into(), b"MIT License\n\nCopyright (c) tests\n".to_vec()));
    let dir = ctx.root.path().join("tiny");
    models::write_dir(&dir, &files);
    ctx.run(&["pull", dir.to_str().unwrap(), "--name", "org/tiny"]).success();
    let show = ctx.run(&["show", "org/tiny", "--json"]).json();
    assert_eq!(show["chat_template"], template.as_str());
    assert_eq!(
        show["generation"],
        serde_json::json!({"temperature": 0.7, "top_p": 0.9, "top_k": null, "do_sample": true, "eos_token_ids": [2, 1]})
    );
    assert_eq!(show["license"]["source"], "LICENSE");
    assert_eq!(show["gguf"], serde_json::Value::Null);
    let text = ctx.run(&["show", "org/tiny"]).success().stdout.clone();
    let expected = [
        "Generation defaults\n  temperature    0.7\n  top_p          0.9\n  top_k          unset\n  do_sample      true\n  eos token ids  2, 1\n",
        "Chat template\n    line 1\n",
        "    line 12\n  (3 more lines: `llmctl show org/tiny --template` prints them)\n",
        "License\n  (LICENSE)\n    MIT License\n\n    Copyright (c) tests\n",
    ];
    for part in expected {
        assert!(text.contains(part), "{part:?} missing:\n{text}");
    }
    ctx.run(&["show", "org/tiny", "--template"]).assert(0, &format!("{template}\n"), "");
}

#[test]
fn show_of_a_model_without_template_says_none() {
    let ctx = ctx_with_tiny_safetensors();
    let show = ctx.run(&["show", "org/tiny", "--json"]).json();
    assert_eq!(show["chat_template"], serde_json::Value::Null);
    assert_eq!(show["license"], serde_json::Value::Null);
    assert_eq!(show["generation"]["eos_token_ids"], serde_json::json!([2]));
    let text = ctx.run(&["show", "org/tiny"]).success().stdout.clone();
    assert!(text.contains("Chat template\n  none\n"), "{text}");
    assert!(text.contains("License\n  none found\n"), "{text}");
    ctx.run(&["show", "org/tiny", "--template"]).assert(0, "", "`org/tiny` has no chat template\n");
}

#[test]
fn show_of_a_gguf_summarizes_its_metadata() {
    let ctx = ctx_with_smollm2_gguf();
    let show = ctx.run(&["show", "smollm2-gguf", "--json"]).json();
    let gguf = &show["gguf"];
    assert_eq!(gguf["architecture"], "llama");
    assert_eq!(gguf["file_type"], "Q4_1");
    assert_eq!(gguf["context_length"], 8192);
    assert_eq!((gguf["tokenizer_model"].as_str(), gguf["tokenizer_pre"].as_str()), (Some("gpt2"), Some("smollm")));
    assert_eq!(gguf["vocab_size"], 49_152);
    assert_eq!(gguf["has_chat_template"], true);
    assert!(show["chat_template"].as_str().unwrap().contains("<|im_start|>"), "{show}");
    assert_eq!(show["generation"], serde_json::Value::Null);
    let text = ctx.run(&["show", "smollm2-gguf"]).success().stdout.clone();
    assert!(text.contains("GGUF metadata\n"), "{text}");
    assert!(text.contains("  tokenizer       gpt2 (pre: smollm)\n"), "{text}");
    assert!(text.contains("  chat template   yes\n"), "{text}");
    let template = ctx.run(&["show", "smollm2-gguf", "--template"]).success().stdout.clone();
    assert_eq!(template.trim_end(), show["chat_template"].as_str().unwrap().trim_end());
}

/// #18: importing draws progress on a terminal, and on one 80 columns wide
/// (`COLUMNS`) no progress line is wider, however long the file name. The
/// terminal is util-linux `script`'s pseudo-terminal.
#[test]
fn import_progress_fits_an_80_column_terminal() {
    // `TERM` set: indicatif draws nothing on a terminal it takes for dumb.
    let ctx = TestContext::new().env("COLUMNS", "80").env("TERM", "xterm");
    let dir = ctx.root.path().join("gguf");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("SmolLM2-135M-Instruct-with-a-rather-long-name-for-a-progress-line.Q4_1.gguf");
    let source = models::smollm2_gguf();
    std::fs::hard_link(&source, &path).or_else(|_| std::fs::copy(&source, &path).map(drop)).unwrap();
    let llmctl = ctx.command(&[]);
    let command = format!("{} pull {} --name smol", llmctl.get_program().to_str().unwrap(), path.display());
    let mut script = std::process::Command::new("script");
    script.args(["-qfec", &command, "/dev/null"]).env_clear();
    for (key, value) in llmctl.get_envs() {
        if let Some(value) = value {
            script.env(key, value);
        }
    }
    let out =
        script.stdin(std::process::Stdio::null()).output().expect("util-linux `script` runs llmctl on a terminal");
    let text = strip_ansi(&String::from_utf8_lossy(&out.stdout));
    assert!(text.contains("/98.4 MB"), "no progress drew:\n{text}");
    let own_line = text.split(['\r', '\n']).any(|l| l == "stored smol (gguf, Q4_1, 98.4 MB)");
    assert!(own_line, "the bars are cleared before the summary:\n{text}");
    assert!(text.contains("SmolLM2-135M-I…"), "the name is shortened in the middle:\n{text}");
    // Status lines (`importing PATH as NAME`) hold whole paths; bars must fit.
    for line in text.split(['\r', '\n']).filter(|l| l.contains("/98.4 MB")) {
        assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
    }
}

/// Drops CSI escape sequences (`ESC [ … letter`), as a terminal would not show them.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}
